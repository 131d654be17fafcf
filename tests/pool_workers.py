"""Work pools for tests: prefect.yaml's pools and deployments on a service's Prefect server, a
real `prefect worker` of the process pool, and polling a plugin step's statuses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pfconclient.client import JobType

from conftest import Service
from prefect_pfcon.job_secrets import KEY_ENV
from test_prefect_native import prefect_cli

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
WORKER_QUERY_SECONDS = 2


def deploy_to_pools(service: Service) -> None:
    """Create the three pools (docker and kubernetes from workpools/ templates) on the service's
    Prefect server and apply every deployment of prefect.yaml to them."""
    for pool, kind, template in (("pfcon-process", "process", None), ("pfcon-docker", "docker", "docker.json"),
                                 ("pfcon-kubernetes", "kubernetes", "kubernetes.json")):
        extra = ["--base-job-template", str(REPO / "workpools" / template)] if template else []
        prefect_cli(service, "work-pool", "create", pool, "--type", kind, "--overwrite", *extra)
    env = {**os.environ, "PREFECT_API_URL": service.prefect_api_url, "PFCON_REPO": str(REPO)}
    result = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@contextmanager
def worker(pool: str, kind: str, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A `prefect worker` of ``pool`` (type ``kind``) with ``env``; its output in ``log_path``.
    Stopped at the end."""
    with log_path.open("w") as log:
        process = subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", kind],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # Prefect's worker may wait on its runs' processes: ours to stop
                process.kill()
                process.wait(timeout=30)


@contextmanager
def process_worker(service: Service, log_path: Path, secrets_key: str) -> Iterator[subprocess.Popen]:
    """A `prefect worker` of pfcon-process on the service's Prefect server, opening job env
    values with ``secrets_key``; its output in ``log_path``. Stopped at the end."""
    env = {**os.environ, "PREFECT_API_URL": service.prefect_api_url, KEY_ENV: secrets_key,
           "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_SECONDS)}
    with worker("pfcon-process", "process", env, log_path) as process:
        yield process


def wait_for_status(client, jid: str, status: str, timeout: float) -> list[str]:
    """Poll the plugin job until it has ``status``; the statuses seen, in order."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while not seen or seen[-1] != status:
        assert time.monotonic() < deadline, seen
        current = client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"]
        if not seen or seen[-1] != current:
            seen.append(current)
        time.sleep(0.1)
    return seen
