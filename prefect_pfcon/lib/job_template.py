"""Kubernetes job templates: a site's batch/v1 Job manifest (a plain mapping, as YAML or JSON
gives it) on which plugin Jobs are built, like the base job template of a Prefect kubernetes
work pool.

The template brings what the compute block does not set (tolerations, affinity,
priorityClassName, annotations, serviceAccountName, extra volumes ...); the block's own Job is
merged over it (``merge_job_template``). The template's one container, if any, may hold only
``volumeMounts``: extra mounts of the plugin container.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from prefect_pfcon.lib.command import INCOMING, OUTGOING

STORE_VOLUME = "storebase"
SHM_VOLUME = "shm"
SHM_PATH = "/dev/shm"
BLOCK_MOUNT_PATHS = (INCOMING, OUTGOING, SHM_PATH)
CONTAINER_KEYS = {"name", "volumeMounts"}
APPENDED = ("volumes", "imagePullSecrets")  # pod spec lists: the template's, then the block's
POD_PATH = ("spec", "template", "spec")


class JobTemplateError(ValueError):
    """A job template that is not a usable batch/v1 Job manifest (one line)."""


def read_job_template(path: str | Path) -> dict[str, Any]:
    """The checked job template in a file: JSON if it ends in ``.json``, else YAML."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise JobTemplateError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    language = "JSON" if path.suffix == ".json" else "YAML"
    try:
        manifest = json.loads(text) if language == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise JobTemplateError(f"{path} is not valid {language}: {' '.join(str(error).split())}") from None
    try:
        return check_job_template(manifest)
    except JobTemplateError as error:
        raise JobTemplateError(f"{path}: {error}") from None


def check_job_template(manifest: Any) -> dict[str, Any]:
    """``manifest`` if it is a batch/v1 Job whose pod leaves the block's names alone."""
    if not isinstance(manifest, dict):
        raise JobTemplateError("a job template is a mapping: a batch/v1 Job manifest")
    if (manifest.get("apiVersion"), manifest.get("kind")) != ("batch/v1", "Job"):
        raise JobTemplateError(f"a job template is a batch/v1 Job, not {manifest.get('apiVersion')} "
                               f"{manifest.get('kind')}")
    _mapping(manifest, "metadata")
    _mapping(manifest, "spec", "template", "metadata")
    pod = _mapping(manifest, *POD_PATH)
    containers = _items(pod, "containers")
    if len(containers) > 1 or any(set(container) - CONTAINER_KEYS for container in containers):
        raise JobTemplateError("a job template's containers are one at most, with volumeMounts only "
                               "(the block sets the plugin container)")
    volumes = {volume.get("name") for volume in _items(pod, "volumes")}
    if taken := sorted(volumes & {STORE_VOLUME, SHM_VOLUME}):
        raise JobTemplateError(f"the volume name {taken[0]} is the block's")
    paths = {mount.get("mountPath") for container in containers for mount in _items(container, "volumeMounts")}
    if taken := sorted(paths & set(BLOCK_MOUNT_PATHS)):
        raise JobTemplateError(f"the mount path {taken[0]} is the block's")
    return manifest


def merge_job_template(template: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The block's Job ``manifest`` merged over ``template`` (both as the API's JSON).

    Mappings merge key by key, the block's value winning (labels, nodeSelector); any other
    value of the block replaces the template's, except: the pod's ``volumes`` and
    ``imagePullSecrets`` are the template's, then those of the block's it lacks; the plugin
    container's ``volumeMounts`` are the block's, then the template container's; the
    template's ``automountServiceAccountToken`` wins. Neither argument is changed.
    """
    merged = _merge(copy.deepcopy(template), manifest)
    pod, template_pod = _mapping(merged, *POD_PATH), _mapping(template, *POD_PATH)
    for key in APPENDED:
        if key in template_pod:
            theirs = copy.deepcopy(template_pod[key])
            pod[key] = [*theirs, *(item for item in pod.get(key, []) if item not in theirs)]
    if "automountServiceAccountToken" in template_pod:
        pod["automountServiceAccountToken"] = template_pod["automountServiceAccountToken"]
    extra = [mount for container in _items(template_pod, "containers") for mount in _items(container, "volumeMounts")]
    if extra:
        plugin = pod["containers"][0]
        plugin["volumeMounts"] = [*plugin.get("volumeMounts", []), *copy.deepcopy(extra)]
    return merged


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{key: _merge(base.get(key), value) for key, value in over.items()}}
    return copy.deepcopy(over)


def _mapping(manifest: dict[str, Any], *path: str) -> dict[str, Any]:
    """The mapping at ``path`` (``{}`` if absent); anything else there is refused."""
    value: Any = manifest
    for depth, key in enumerate(path, 1):
        value = value.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise JobTemplateError(f"a job template's {'.'.join(path[:depth])} is a mapping")
    return value


def _items(parent: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The list of mappings at ``parent[key]`` (``[]`` if absent); anything else is refused."""
    items = parent.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise JobTemplateError(f"a job template's {key} is a list of mappings")
    return items
