"""``GET /api/v1/ops/status/`` and ``prefect-pfcon status`` against real components: the Docker
engine, Slurm, Kubernetes, Swift and S3 up; a work pool without workers; a Docker engine that
does not exist and a Prefect server stopped. Always 200: a component down is in the answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import Service, _start_replica, _start_service, _stop
from s3_objects import s3_bucket
from test_faults import PrefectServer, running_prefect_server

STATUS = "ops/status/"
POOL = "pfcon-status-pool"


def status(service: Service) -> dict:
    answer = requests.get(service.url + STATUS, headers=service.headers(), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def available_status(service: Service, tries: int = 3) -> dict:
    """The status once it says available (a backend's first probe may outlast the timeout on
    a loaded host, e.g. Kubernetes' client loading its configuration; the next finds it ready)."""
    for _ in range(tries - 1):
        answer = status(service)
        if answer["available"]:
            return answer
        time.sleep(1)
    return status(service)


def cli_status(service: Service, *options: str) -> subprocess.CompletedProcess[str]:
    """``prefect-pfcon status`` against the service (the default credentials)."""
    env = {**os.environ, "PFCON_URL": service.url.removesuffix("/api/v1/")}
    return subprocess.run([sys.executable, "-m", "prefect_pfcon.cli", "status", *options], env=env,
                          capture_output=True, text=True, timeout=60)


def test_status_requires_a_token(fslink_service: Service):
    answer = requests.get(fslink_service.url + STATUS, timeout=30)
    assert answer.status_code == 401
    assert answer.json() == {"message": "Missing authorization header."}


def test_docker_service_is_available(fslink_service: Service, docker_client):
    answer = status(fslink_service)
    assert answer["available"] is True and "reason" not in answer
    assert answer["prefect"]["up"] and answer["prefect"]["url"] == fslink_service.prefect_api_url
    assert answer["runner"] == {"up": True, "latency_ms": 0.0, "kind": "embedded", "capacity": 16,
                                "running": 0, "waiting": 0}
    compute = answer["compute"]
    assert (compute["up"], compute["container_env"]) == (True, "docker")
    assert compute["version"] == docker_client.version()["Version"]
    storage = answer["storage"]
    assert (storage["up"], storage["storage_env"], storage["store_base"]) == (True, "fslink",
                                                                             str(fslink_service.store_base))
    assert 0 < storage["free_bytes"] <= storage["total_bytes"]

    shown = cli_status(fslink_service)
    assert shown.returncode == 0, shown.stderr
    assert "available" in shown.stdout and "docker" in shown.stdout
    raw = cli_status(fslink_service, "--json")
    assert raw.returncode == 0 and json.loads(raw.stdout)["compute"]["version"] == compute["version"]


def test_slurm_partitions(slurm_service: Service):
    answer = available_status(slurm_service)
    assert answer["available"] is True, answer
    compute = answer["compute"]
    assert compute["container_env"] == "slurm" and compute["version"][0].isdigit()
    names = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert [partition["name"] for partition in compute["partitions"]] == names
    assert all(0 <= p["idle_nodes"] <= p["nodes"] for p in compute["partitions"])


def test_kubernetes_nodes(kubernetes_service: Service):
    answer = available_status(kubernetes_service)
    assert answer["available"] is True, answer
    compute = answer["compute"]
    assert compute["container_env"] == "kubernetes" and compute["version"].startswith("v")
    assert compute["nodes"] and all(node["ready"] for node in compute["nodes"])
    assert all(node["cpu"] > 0 and node["memory_mib"] > 0 and node["gpu"] == 0 for node in compute["nodes"])


@pytest.mark.parametrize("storage, url_variable", [("swift", "ST_AUTH"), ("s3", "AWS_ENDPOINT_URL")])
def test_object_storage_reachable(request, storage: str, url_variable: str):
    service = request.getfixturevalue(f"{storage}_service")
    if storage == "s3":
        s3_bucket(request.getfixturevalue("s3_credentials"))  # a missing bucket is down (NoSuchBucket)
    answer = available_status(service)
    assert answer["available"] is True, answer
    assert answer["storage"]["storage_env"] == storage
    assert answer["storage"]["object_store"] == os.environ[url_variable]
    assert answer["storage"]["free_bytes"] > 0


def test_work_pool_without_workers_is_down(session_tmp: Path, fslink_service: Service):
    """With PFCON_DEPLOYMENT the runner is the pool's: down while no worker polls it."""
    pool = fslink_service.prefect("post", "/work_pools/", json={"name": POOL, "type": "process"})
    assert pool.status_code in (201, 409), pool.text
    flow = fslink_service.prefect("post", "/flows/", json={"name": "pfcon-job"}).json()
    deployment = fslink_service.prefect("post", "/deployments/", json={
        "name": POOL, "flow_id": flow["id"], "work_pool_name": POOL, "entrypoint": "prefect_pfcon/flows/job.py:job_flow"})
    assert deployment.status_code in (200, 201), deployment.text
    replica = _start_replica(session_tmp, fslink_service, "fslink", {"PFCON_DEPLOYMENT": POOL}, name="status-pool")
    try:
        answer = status(replica)
    finally:
        _stop(replica)
    runner = answer["runner"]
    assert (runner["kind"], runner["work_pool"], runner["work_pool_status"]) == ("work-pool", POOL, "NOT_READY")
    assert answer["available"] is False and answer["reason"].startswith(f"runner: work pool {POOL} is NOT_READY")
    assert "capacity" not in runner


@pytest.fixture(scope="module")
def prefect_server(session_tmp: Path) -> Iterator[PrefectServer]:
    with running_prefect_server(session_tmp / "prefect-status") as server:
        yield server


@pytest.fixture(scope="module")
def engineless(session_tmp: Path, prefect_server: PrefectServer) -> Iterator[Service]:
    """A service on a Prefect server of its own, its Docker engine a socket that does not exist."""
    env = {"PREFECT_API_URL": prefect_server.url, "PREFECT_HOME": str(prefect_server.home),
           "DOCKER_HOST": f"unix://{session_tmp}/no-such-dockerd.sock", "PFCON_STATUS_TIMEOUT_SECONDS": "2"}
    service = _start_service(session_tmp, "status-engineless", "fslink", env, 0)
    yield service
    _stop(service)


def test_engine_down_then_prefect_down(engineless: Service, prefect_server: PrefectServer):
    answer = status(engineless)
    assert answer["available"] is False and answer["prefect"]["up"] is True
    assert answer["compute"]["up"] is False and "version" not in answer["compute"]
    assert answer["reason"] == f"compute: {answer['compute']['error']}"
    assert "The Docker engine cannot be reached" in answer["reason"]
    assert answer["storage"]["up"] is True
    shown = cli_status(engineless)
    assert shown.returncode == 1 and "unavailable" in shown.stdout

    prefect_server.stop()
    started = time.monotonic()
    answer = status(engineless)
    assert time.monotonic() - started < 8  # each probe gives up after PFCON_STATUS_TIMEOUT_SECONDS
    assert answer["prefect"]["up"] is False and answer["prefect"]["error"]
    assert answer["reason"] == f"prefect: {answer['prefect']['error']}"  # the first component down
    assert answer["compute"]["up"] is False and answer["storage"]["up"] is True
    assert cli_status(engineless, "--json").returncode == 1
