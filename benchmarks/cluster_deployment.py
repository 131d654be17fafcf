"""Hold deploy/kubernetes (its loopback overlay, as tests/kubernetes_deploy.py applies it to the
test cluster) up for benchmarks/deployments.sh: writes the API's URL, user, password, storeBase
and the host PIDs of its API and Prefect server containers to a JSON file, then waits for
SIGTERM and deletes the namespace.

    python benchmarks/cluster_deployment.py <workdir> <json file>
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kubernetes_deploy import cluster_deployment  # noqa: E402  (the tests' own overlay writer)


def container_pid(namespace: str, container: str) -> int:
    """The host PID of a pod's container (the kubelet runs pods on this machine's dockerd)."""
    (found,) = docker.from_env().containers.list(filters={"label": [
        f"io.kubernetes.pod.namespace={namespace}", f"io.kubernetes.container.name={container}"]})
    return found.attrs["State"]["Pid"]


def main() -> None:
    workdir, answer = Path(sys.argv[1]), Path(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with cluster_deployment(workdir, "pfcon-bench") as service:
        answer.write_text(json.dumps({
            "url": service.url, "user": service.user, "password": service.password,
            "store_base": str(service.store_base),
            "pid": container_pid(service.namespace, "pfcon"),
            "prefect_pid": container_pid(service.namespace, "prefect-server")}))
        stop.wait()


if __name__ == "__main__":
    main()
