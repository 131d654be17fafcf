"""The pfcon-kubernetes work pool on a cluster deployment for tests: the pool's template set for
the deployment's namespace (and the loopback-only test cluster), a real `prefect worker` of
type kubernetes on the host, and an API replica in the cluster with PFCON_DEPLOYMENT=kubernetes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from conftest import free_port
from kubernetes_deploy import ClusterService, apiserver_port, kubectl, test_image, wait_available
from pool_workers import WORKER_QUERY_SECONDS, worker
from prefect_pfcon.job_secrets import KEY_ENV

POOL = "pfcon-kubernetes"
POOL_API = "pfcon-pool"


def set_pool_defaults(service: ClusterService) -> None:
    """Point the pool's flow pods at the deployment, as a site edits its pool's template: its
    namespace, the image under test, the host network and the API server on loopback."""
    pool = service.prefect("get", f"/work_pools/{POOL}").json()
    template = pool["base_job_template"]
    defaults = {
        "namespace": service.namespace,
        "image": test_image(),
        "host_network": True,
        "env": {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(apiserver_port())},
    }
    for name, value in defaults.items():
        template["variables"]["properties"][name]["default"] = value
    service.prefect("patch", f"/work_pools/{POOL}", json={"base_job_template": template}).raise_for_status()


@contextmanager
def kubernetes_worker(service: ClusterService, log_path: Path) -> Iterator[subprocess.Popen]:
    """A `prefect worker` of the kubernetes pool on the host (the cluster from KUBECONFIG),
    with no job secrets key of its own: flow pods get it from the namespace's Secret."""
    env = {key: value for key, value in os.environ.items() if key != KEY_ENV}
    env.update({"PREFECT_API_URL": service.prefect_api_url, "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_SECONDS)})
    with worker(POOL, "kubernetes", env, log_path) as process:
        yield process


def _env_value(container: dict, name: str, value: str) -> None:
    """Set (or add) a plain env value of a container spec."""
    for entry in container["env"]:
        if entry["name"] == name:
            entry.clear()
            entry.update(name=name, value=value)
            return
    container["env"].append({"name": name, "value": value})


@contextmanager
def pool_api_replica(service: ClusterService, env: dict[str, str]) -> Iterator[ClusterService]:
    """A second API Deployment beside the deployment's own, the same but for its port, its
    state (none kept: the image's own state dir) and ``env`` (PFCON_DEPLOYMENT=kubernetes ...)."""
    manifest = json.loads(kubectl("-n", service.namespace, "get", "deployment", "pfcon", "-o", "json"))
    port = free_port()
    labels = {"app.kubernetes.io/name": "prefect-pfcon", "app.kubernetes.io/component": POOL_API}
    manifest["metadata"] = {"name": POOL_API, "namespace": service.namespace, "labels": labels}
    manifest.pop("status", None)
    spec = manifest["spec"]
    spec["selector"] = {"matchLabels": labels}
    spec["template"]["metadata"] = {"labels": labels}
    pod = spec["template"]["spec"]
    pod["volumes"] = [volume for volume in pod["volumes"] if volume["name"] != "state"]
    container = pod["containers"][0]
    container["volumeMounts"] = [mount for mount in container["volumeMounts"] if mount["name"] != "state"]
    container["ports"][0].update(containerPort=port, hostPort=port)  # equal on the host network
    for name, value in {"PFCON_PORT": str(port), **env}.items():
        _env_value(container, name, value)
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    try:
        wait_available(service.namespace, (POOL_API,))
        yield replace(service, url=f"http://127.0.0.1:{port}/api/v1/")
    finally:
        kubectl("-n", service.namespace, "delete", "deployment", POOL_API, "--wait=false", check=False)
