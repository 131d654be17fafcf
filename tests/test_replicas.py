"""API replicas, for real: two `prefect-pfcon up` with PFCON_DEPLOYMENT=process (no runner of
their own) on one Prefect server on PostgreSQL, their jobs run by a real `prefect worker` of the
process pool. CUBE's requests alternate between the replicas (as behind a load balancer): each
answers every job alike, at most a status view behind the other, and a replica killed with
SIGKILL mid-job loses nothing: the other answers and the job completes once."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pfconclient.client import Client, JobType
from pfconclient.exceptions import PfconRequestException

from conftest import Service, _start_replica, _stop, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture
from pool_workers import deploy_to_pools, process_worker, wait_for_status
from prefect_pfcon.job_secrets import KEY_ENV
from test_fslink_lifecycle import copy_inputs, job_runs, plugin_descriptors, settled_runs, sh_plugin

LAG_SECONDS = 1.0
"""The most one replica's status may trail the other's (each reads Prefect at most 0.5 s late)."""
LOADED_LAG_SECONDS = 3.0
"""The same with four lifecycles at once: their polls share two cores with the worker's four
flow runs, so one round of polls takes longer."""
TERMINAL = ("finishedSuccessfully", "finishedWithError", "undefined")
STEP_TIMEOUT = 300  # a job's first step waits for the worker to start its flow run's process
LIFECYCLES = 4


@pytest.fixture(scope="module")
def server(postgres_service: Service) -> Service:
    """The Prefect server on PostgreSQL, with prefect.yaml's pools and deployments."""
    deploy_to_pools(postgres_service)
    return postgres_service


@pytest.fixture(scope="module")
def secrets_key() -> str:
    """The key the replicas and the worker share for job env values."""
    return Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def worker(server: Service, session_tmp: Path, secrets_key: str) -> Iterator[subprocess.Popen]:
    with process_worker(server, session_tmp / "replicas-worker.log", secrets_key) as process:
        yield process


@pytest.fixture(scope="module")
def store_base(session_tmp: Path) -> Path:
    """The storeBase every replica and the worker's flow runs share (the storage block's)."""
    base = session_tmp / "storeBase-replicas"
    base.mkdir(parents=True, exist_ok=True)
    make_fslink_fixture(base)
    return base


def start_replica(session_tmp: Path, server: Service, name: str, secrets_key: str, store_base: Path) -> Service:
    """A replica: the work-pool mode with the shared blocks, storeBase and keys (SECRET_KEY is
    the tests' for every service)."""
    env = {"PFCON_DEPLOYMENT": "process", KEY_ENV: secrets_key, "PFCON_JOB_IDLE_SECONDS": "120",
           "PFCON_STORAGE_BLOCK": "replicas-storage", "PFCON_COMPUTE_BLOCK": "replicas-compute"}
    return _start_replica(session_tmp, server, "fslink", env, name=name, store_base=store_base)


@pytest.fixture(scope="module")
def replicas(server: Service, worker, session_tmp: Path, secrets_key: str, store_base: Path) -> Iterator[list[Service]]:
    started = [start_replica(session_tmp, server, f"replica-{name}", secrets_key, store_base) for name in "ab"]
    yield started
    for replica in started:
        _stop(replica)


def first_seen(clients: list[Client], job_type: JobType, jid: str, timeout: float = STEP_TIMEOUT) -> list[dict]:
    """Poll the step on each replica in turn until every one answers a terminal status; for
    each replica, when (monotonic) it first answered each status, and its last compute object."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, float]] = [{} for _ in clients]
    last: list[dict] = [{} for _ in clients]
    while not all(compute.get("status") in TERMINAL for compute in last):
        assert time.monotonic() < deadline, (seen, last)
        for index, client in enumerate(clients):
            last[index] = client.get_job_status(job_type, jid)["compute"]
            seen[index].setdefault(last[index]["status"], time.monotonic())
        time.sleep(0.05)
    return [{"seen": times, "compute": compute} for times, compute in zip(seen, last)]


def assert_consistent(clients: list[Client], job_type: JobType, jid: str, lag: float) -> dict:
    """Both replicas end the step alike, each no more than ``lag`` seconds after the other; the
    final compute object."""
    ends = first_seen(clients, job_type, jid)
    (a, b) = ends
    assert a["compute"] == b["compute"], ends  # same status, message, timestamp and logs
    final = a["compute"]["status"]
    assert abs(a["seen"][final] - b["seen"][final]) <= lag, ends
    return a["compute"]


def post_and_read_elsewhere(poster: Client, reader: Client, job_type: JobType, jid: str, body: dict) -> dict:
    """POST a step on one replica and read its status on the other right away: it is there."""
    answer = poster.submit_job(job_type, jid, body)
    seen = reader.get_job_status(job_type, jid)["compute"]
    assert seen["jid"] == jid and seen["status"] in ("notStarted", "started", *TERMINAL), seen
    return answer


def alternating_lifecycle(replicas: list[Service], jid: str, output_dir: str, lag: float = LAG_SECONDS) -> None:
    """CUBE's fslink lifecycle, each request on the other replica than the one before, the
    replicas' statuses at most ``lag`` seconds apart."""
    a, b = (replica.client() for replica in replicas)
    post_and_read_elsewhere(a, b, JobType.COPY, jid, {"input_dirs": ["home/alice/feed/in"], "output_dir": output_dir})
    copy = assert_consistent([b, a], JobType.COPY, jid, lag)
    assert copy["status"] == "finishedSuccessfully" and "Staged 4 files" in copy["logs"], copy

    post_and_read_elsewhere(b, a, JobType.PLUGIN, jid, plugin_descriptors(output_dir))
    plugin = assert_consistent([a, b], JobType.PLUGIN, jid, lag)
    assert plugin["status"] == "finishedSuccessfully" and plugin["logs"] == "start\ndone\n", plugin
    listing = a.get_plugin_job_json_data(jid, output_dir)
    assert sorted(listing["rel_file_paths"]) == sorted([*FSLINK_STAGED, "new.txt"])

    upload = b.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    assert upload["compute"]["message"] == "uploadSkipped", upload

    post_and_read_elsewhere(a, b, JobType.DELETE, jid, {})
    assert assert_consistent([b, a], JobType.DELETE, jid, lag)["status"] == "finishedSuccessfully"
    assert not (replicas[0].store_base / f"key-{jid}").exists()

    for job_type in (JobType.COPY, JobType.PLUGIN, JobType.DELETE):
        b.delete_job(job_type, jid)
    deadline = time.monotonic() + lag  # the other replica's view may be that much older
    while True:
        try:
            a.get_job_status(JobType.PLUGIN, jid)
        except PfconRequestException as missing:
            assert missing.code == 404
            break
        assert time.monotonic() < deadline, "the other replica still answers the DELETEd job"
        time.sleep(0.05)


def one_completed_run(server: Service, jid: str) -> dict:
    """The job's one flow run, once it completed (just after its delete step)."""
    deadline = time.monotonic() + 60
    while (runs := job_runs(server, jid)) and runs[0]["state_type"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED", runs
    return runs[0]


def test_a_lifecycle_alternating_between_replicas_reads_alike(server: Service, replicas: list[Service]):
    jid, output_dir = f"h15-alt-{uuid.uuid4().hex[:10]}", f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    alternating_lifecycle(replicas, jid, output_dir)
    run = one_completed_run(server, jid)
    assert run["work_pool_name"] == "pfcon-process"
    for step in ("copy", "plugin", "delete"):
        (task,) = settled_runs(server, f"{step}-{jid}")
        assert task["state_type"] == "COMPLETED" and task["flow_run_id"] == run["id"]


def test_lifecycles_spread_over_replicas_all_complete(server: Service, replicas: list[Service]):
    jobs = [(f"h15-many-{index}-{uuid.uuid4().hex[:8]}", f"home/alice/feed/out-{uuid.uuid4().hex[:6]}",
             replicas[index % 2:] + replicas[:index % 2]) for index in range(LIFECYCLES)]
    with ThreadPoolExecutor(LIFECYCLES) as pool:
        for done in [pool.submit(alternating_lifecycle, order, jid, out, LOADED_LAG_SECONDS) for jid, out, order in jobs]:
            done.result()
    for jid, _, _ in jobs:
        one_completed_run(server, jid)


def test_a_replica_killed_mid_job_loses_nothing(server: Service, replicas: list[Service], session_tmp: Path,
                                                secrets_key: str, store_base: Path):
    """The plugin is posted to a third replica, which is killed while it runs: the others
    answer at once, and the plugin runs to its end exactly once."""
    survivor = replicas[0]
    doomed = start_replica(session_tmp, server, "replica-doomed", secrets_key, store_base)
    client = survivor.client()
    jid, output_dir = f"h15-kill-{uuid.uuid4().hex[:10]}", f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    try:
        assert copy_inputs(doomed, jid, output_dir)["status"] == "finishedSuccessfully"
        script = 'echo run >> "$2"/runs.txt; sleep 8; echo done'
        doomed.client().submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script))
        wait_for_status(doomed.client(), jid, "started", timeout=STEP_TIMEOUT)
    finally:
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=30)
    assert client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] == "started"
    plugin = wait_status(client, JobType.PLUGIN, jid, timeout=STEP_TIMEOUT)
    assert plugin["status"] == "finishedSuccessfully" and plugin["logs"].endswith("done\n"), plugin
    assert (store_base / output_dir / "runs.txt").read_text() == "run\n"  # ran exactly once
    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    one_completed_run(server, jid)
    (task,) = settled_runs(server, f"plugin-{jid}")
    assert task["state_type"] == "COMPLETED"
