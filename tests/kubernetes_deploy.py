"""deploy/kubernetes/loopback applied to the test cluster, as a site applies its own overlay:
a fresh namespace, ports of its own, host directories as its volumes and generated secrets;
waited for until every Deployment is available, and deleted with its volumes at the end."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cryptography.fernet import Fernet
from pfconclient.client import Client

from conftest import TEST_PREFECT_AUTH, Service, free_port

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = REPO / "deploy" / "kubernetes" / "loopback"
PFCON_UID = 1001
READY_SECONDS = 240
# host dir: its claim and the loopback overlay's PersistentVolume of it
VOLUMES = {"storebase": ("storebase", "prefect-pfcon-storebase"), "state": ("pfcon-state", "prefect-pfcon-state"),
           "postgres": ("postgres-data", "prefect-pfcon-postgres-data")}


def test_image() -> str:
    """The prefect-pfcon image the tests run (the test command builds it)."""
    return os.environ.get("PFCON_TEST_IMAGE", "prefect-pfcon:latest")


def kubectl(*args: str, timeout: float = 120, check: bool = True, stdin: str | None = None) -> str:
    """``kubectl`` on the test cluster (``KUBECONFIG``); its output."""
    result = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


def apiserver_port() -> int:
    """The API server's port, from the kubeconfig in use."""
    server = json.loads(kubectl("config", "view", "--minify", "-o", "json"))["clusters"][0]["cluster"]["server"]
    return urlparse(server).port or 443


@dataclass
class ClusterService(Service):
    """The pfcon API of a cluster deployment, reached from the host on 127.0.0.1."""

    namespace: str = ""
    user: str = ""
    password: str = ""
    job_secrets_key: str = ""

    def token(self) -> str:
        return Client.get_auth_token(self.url + "auth-token/", self.user, self.password)


def _env_patch(kind: str, name: str, containers: dict[str, dict[str, str]], init: dict[str, dict[str, str]]) -> dict:
    """A strategic-merge patch setting env values of a workload's (init) containers."""
    def named(entries: dict[str, dict[str, str]]) -> list[dict]:
        return [{"name": container, "env": [{"name": k, "value": v} for k, v in env.items()]}
                for container, env in entries.items()]

    spec: dict = {"containers": named(containers)}
    if init:
        spec["initContainers"] = named(init)
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": {"template": {"spec": spec}}}


GROUP_VERSIONS = {"Deployment": ("apps", "v1"), "PersistentVolume": ("", "v1"), "PersistentVolumeClaim": ("", "v1")}


def write_overlay(directory: Path, namespace: str, volume_dirs: dict[str, Path], ports: dict[str, int],
                  secret_values: dict[str, dict[str, str]]) -> None:
    """A kustomization on top of the loopback overlay: the namespace, the image under test, the
    ports, the volumes' host directories (PersistentVolumes named after the namespace) and the
    two Secrets the base needs. In kustomize 2.0's syntax (kubectl 1.20's), which newer
    kustomize takes too."""
    prefect_url = f"http://127.0.0.1:{ports['prefect']}/api"
    merges = [
        _env_patch("Deployment", "pfcon", {"pfcon": {
            "PFCON_PORT": str(ports["pfcon"]), "PREFECT_API_URL": prefect_url,
            "KUBERNETES_SERVICE_PORT": str(apiserver_port())}}, {"wait-for-prefect": {"PREFECT_API_URL": prefect_url}}),
        _env_patch("Deployment", "prefect-server", {"prefect-server": {
            "PREFECT_SERVER_API_PORT": str(ports["prefect"]), "PREFECT_SERVER_DATABASE_PORT": str(ports["postgres"])}},
            {"wait-for-postgres": {"PREFECT_SERVER_DATABASE_PORT": str(ports["postgres"])}}),
        _env_patch("Deployment", "postgres", {"postgres": {"PGPORT": str(ports["postgres"])}}, {}),
    ]
    operations: list[tuple[str, str, list[dict]]] = [
        ("Deployment", workload, [{"op": "replace", "path": "/spec/template/spec/containers/0/ports/0/containerPort",
                                   "value": port}])
        for workload, port in (("pfcon", ports["pfcon"]), ("prefect-server", ports["prefect"]),
                               ("postgres", ports["postgres"]))
    ]
    for host_dir, (claim, loopback_volume) in VOLUMES.items():
        volume = f"{namespace}-{claim}"
        operations.append(("PersistentVolume", loopback_volume, [
            {"op": "replace", "path": "/metadata/name", "value": volume},
            {"op": "replace", "path": "/spec/hostPath/path", "value": str(volume_dirs[host_dir])}]))
        operations.append(("PersistentVolumeClaim", claim, [{"op": "replace", "path": "/spec/volumeName", "value": volume}]))
    directory.mkdir(parents=True, exist_ok=True)
    json_patches = []
    for index, (kind, name, patch) in enumerate(operations):
        (directory / f"json-{index}.json").write_text(json.dumps(patch))
        group, version = GROUP_VERSIONS[kind]
        target = {"group": group, "version": version, "kind": kind, "name": name} if group else \
            {"version": version, "kind": kind, "name": name}
        json_patches.append({"target": target, "path": f"json-{index}.json"})
    for index, patch in enumerate(merges):
        (directory / f"merge-{index}.json").write_text(json.dumps(patch))
    image, _, tag = test_image().rpartition(":")
    kustomization = {
        "namespace": namespace,
        "bases": [os.path.relpath(LOOPBACK, directory)],
        "images": [{"name": "prefect-pfcon", "newName": image, "newTag": tag}],
        "generatorOptions": {"disableNameSuffixHash": True},
        "secretGenerator": [{"name": name, "literals": [f"{k}={v}" for k, v in values.items()]}
                            for name, values in secret_values.items()],
        "patchesStrategicMerge": [f"merge-{index}.json" for index in range(len(merges))],
        "patchesJson6902": json_patches,
    }
    (directory / "kustomization.yaml").write_text(json.dumps(kustomization, indent=2))  # JSON is YAML


def diagnostics(namespace: str) -> str:
    """What the namespace's pods did, for a deployment that did not become available."""
    pods = kubectl("-n", namespace, "get", "pods", "-o", "wide", check=False)
    logs = kubectl("-n", namespace, "logs", "--all-containers", "--tail", "30", "-l",
                   "app.kubernetes.io/name=prefect-pfcon", "--prefix", "--max-log-requests", "10", check=False)
    events = kubectl("-n", namespace, "get", "events", "--sort-by", ".lastTimestamp", check=False)
    return f"{pods}\n{logs}\n{events[-4000:]}"


def wait_available(namespace: str, names: tuple[str, ...] = ()) -> None:
    """Wait until the namespace's Deployments (or those named) have all their replicas
    available (polled: kubectl 1.20's ``wait`` can outlive its timeout)."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        found = json.loads(kubectl("-n", namespace, "get", "deployments", "-o", "json"))["items"]
        waiting = [item["metadata"]["name"] for item in found
                   if (not names or item["metadata"]["name"] in names)
                   and item["status"].get("availableReplicas", 0) < item["spec"]["replicas"]]
        if found and not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{namespace}: {waiting} not available\n{diagnostics(namespace)}")
        time.sleep(1)


@contextmanager
def cluster_deployment(tmp: Path, prefix: str = "pfcon-k8s") -> Iterator[ClusterService]:
    """prefect-pfcon deployed from the loopback overlay into a new namespace; the namespace and
    its PersistentVolumes are deleted at the end."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    root = tmp / namespace
    volume_dirs = {name: root / name for name in VOLUMES}
    for name, path in volume_dirs.items():
        path.mkdir(parents=True)
        if name == "postgres":
            path.chmod(0o777)  # the image's postgres user makes PGDATA under it
        else:
            os.chown(path, PFCON_UID, PFCON_UID)
    ports = {"pfcon": free_port(), "prefect": free_port(), "postgres": free_port()}
    user, password = "chris-k8s", secrets.token_urlsafe(16)
    job_secrets_key = Fernet.generate_key().decode()
    write_overlay(root / "overlay", namespace, volume_dirs, ports, {
        "prefect-pfcon": {"PFCON_USER": user, "PFCON_PASSWORD": password, "SECRET_KEY": secrets.token_urlsafe(32),
                          "PREFECT_AUTH_STRING": TEST_PREFECT_AUTH, "POSTGRES_PASSWORD": secrets.token_urlsafe(16)},
        "pfcon-job-secrets": {"PFCON_JOB_SECRETS_KEY": job_secrets_key},
    })
    kubectl("create", "namespace", namespace)
    try:
        kubectl("apply", "-k", str(root / "overlay"))
        wait_available(namespace)
        yield ClusterService(
            url=f"http://127.0.0.1:{ports['pfcon']}/api/v1/", store_base=volume_dirs["storebase"],
            prefect_api_url=f"http://127.0.0.1:{ports['prefect']}/api", process=None, output=[],
            namespace=namespace, user=user, password=password, job_secrets_key=job_secrets_key)
    finally:
        kubectl("delete", "namespace", namespace, "--timeout=120s", timeout=150, check=False)
        kubectl("delete", "persistentvolume", *(f"{namespace}-{claim}" for claim, _ in VOLUMES.values()),
                "--ignore-not-found", "--timeout=60s", timeout=90, check=False)
