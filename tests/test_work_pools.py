"""prefect.yaml's deployments on real work pools: the process pool runs whole jobs and the
API's jobs (PFCON_DEPLOYMENT=process: one flow run per job, a task run per step) through a real
`prefect worker`; the docker and kubernetes pools are created from workpools/ templates and
every deployment applies."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pfconclient.client import JobType
from pfconclient.exceptions import PfconRequestException

from conftest import Service, _start_replica, _stop, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture, tree
from pool_workers import deploy_to_pools, process_worker, wait_for_status
from prefect_pfcon.job_secrets import KEY_ENV
from test_fslink_lifecycle import job_runs, settled_runs, sh_plugin
from test_prefect_native import plugin_spec, run_deployment, wait_run

IDLE_SECONDS = 15
"""The pool API's PFCON_JOB_IDLE_SECONDS: longer than any pause of its tests between steps."""
EVENT_START_SECONDS = 3.0
"""The most a plugin posted to an idle job may take to start: its flow run hears of it by an
event (the run re-reads its inputs without one only every 300 s), then starts a container."""


@pytest.fixture(scope="module")
def pools(fslink_service: Service) -> Service:
    deploy_to_pools(fslink_service)
    return fslink_service


@pytest.fixture(scope="module")
def secrets_key() -> str:
    """The key the pool's API and its worker share for job env values."""
    return Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def worker(pools: Service, session_tmp: Path, secrets_key: str) -> Iterator[subprocess.Popen]:
    with process_worker(pools, session_tmp / "process-worker.log", secrets_key) as process:
        yield process


@pytest.fixture(scope="module")
def pool_api(pools: Service, worker, session_tmp: Path, secrets_key: str) -> Iterator[Service]:
    """An API replica with PFCON_DEPLOYMENT=process, on the pools' Prefect server."""
    replica = _start_replica(session_tmp, pools, "fslink", {
        "PFCON_DEPLOYMENT": "process", KEY_ENV: secrets_key, "PFCON_JOB_IDLE_SECONDS": str(IDLE_SECONDS)},
        name="pool-api")
    make_fslink_fixture(replica.store_base)
    yield replica
    _stop(replica)


def test_every_deployment_applies_to_its_pool(pools: Service):
    deployments = pools.prefect("post", "/deployments/filter", json={}).json()
    by_pool = {}
    for deployment in deployments:
        by_pool.setdefault(deployment["work_pool_name"], set()).add(deployment["name"])
    assert by_pool["pfcon-process"] == {"process"}
    assert by_pool["pfcon-docker"] == {"docker"} and by_pool["pfcon-kubernetes"] == {"kubernetes"}
    template = pools.prefect("get", "/work_pools/pfcon-kubernetes").json()
    pod = template["base_job_template"]["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "{{ storebase_claim }}"


def test_whole_job_on_the_process_pool(pools: Service, worker):
    service = pools
    make_fslink_fixture(service.store_base)
    jid, output_dir = f"pool-{uuid.uuid4().hex[:8]}", f"home/alice/feeds/pool-{uuid.uuid4().hex[:6]}"
    run_id = run_deployment(service, "pfcon-job/process", {
        "job": {"plugin": plugin_spec(), "input_dirs": ["home/alice/feed/in"], "output_dir": output_dir, "jid": jid},
        "storage_block": "fslink-storage", "compute_block": "fslink-compute"})
    run = wait_run(service, run_id, timeout=300)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["work_pool_name"] == "pfcon-process"
    assert tree(service.store_base / output_dir) == FSLINK_STAGED


def test_api_jobs_run_on_the_pool(pools: Service, pool_api: Service, docker_client):
    """CUBE's job steps posted to the pool API become task runs of one flow run ``job-<jid>``
    of pfcon-job/process, which the worker runs (opening the env the API sealed); the run is
    woken by an event for each step, and a DELETE stops a step."""
    replica = pool_api
    client = replica.client()
    jid, output_dir = f"pool-api-{uuid.uuid4().hex[:10]}", f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"

    client.submit_job(JobType.COPY, jid, {"input_dirs": ["home/alice/feed/in"], "output_dir": output_dir})
    assert client.get_job_status(JobType.COPY, jid)["compute"]["status"] == "notStarted"  # until a worker takes its run
    copy = wait_status(client, JobType.COPY, jid, timeout=120)
    assert copy["status"] == "finishedSuccessfully" and "Staged 4 files" in copy["logs"], copy

    # a DELETE stops a running plugin: its container goes, the job forgets it
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo waiting; sleep 300"))
    wait_for_status(client, jid, "started", timeout=60)
    client.delete_job(JobType.PLUGIN, jid)
    with pytest.raises(PfconRequestException) as missing:
        client.get_job_status(JobType.PLUGIN, jid)
    assert missing.value.code == 404
    assert not docker_client.containers.list(all=True, ignore_removed=True, filters={"name": f"^/{jid}$"})

    # posted to the idle job again, the plugin starts at once: an event woke the run
    time.sleep(2)
    posted = time.monotonic()
    script = 'echo "SECRET is $SECRET"; echo "$SECRET" > "$2"/env.txt; sleep 2; echo done'
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script, env=["SECRET=pool-secret-value"]))
    seen = wait_for_status(client, jid, "started", timeout=60)
    assert time.monotonic() - posted < EVENT_START_SECONDS, seen
    assert seen[0] == "notStarted"
    plugin = wait_status(client, JobType.PLUGIN, jid, timeout=120)
    assert plugin["status"] == "finishedSuccessfully", plugin
    assert (replica.store_base / output_dir / "env.txt").read_text() == "pool-secret-value\n"  # opened on the worker
    assert "SECRET is" in plugin["logs"] and "pool-secret-value" not in plugin["logs"]

    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid, timeout=60)["status"] == "finishedSuccessfully"
    assert not (replica.store_base / f"key-{jid}").exists()

    # in Prefect: one flow run of the job on the pool, the steps its task runs
    runs = job_runs(pools, jid)
    assert len(runs) == 1 and runs[0]["work_pool_name"] == "pfcon-process"
    deployment = pools.prefect("get", f"/deployments/{runs[0]['deployment_id']}").json()
    assert deployment["name"] == "process" and runs[0]["parameters"]["jid"] == jid
    deadline = time.monotonic() + 30  # the run ends just after its delete step
    while (run := job_runs(pools, jid)[0])["state_type"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run["state_type"] == "COMPLETED", run["state"]
    steps = {step: settled_runs(pools, f"{step}-{jid}", count=2 if step == "plugin" else 1)
             for step in ("copy", "plugin", "delete")}
    assert {task["flow_run_id"] for tasks in steps.values() for task in tasks} == {run["id"]}
    assert [task["state_type"] for task in steps["plugin"]] == ["COMPLETED", "CANCELLED"]
    assert steps["copy"][0]["state_type"] == steps["delete"][0]["state_type"] == "COMPLETED"


def test_an_idle_job_ends_and_a_later_step_starts_another_run(pools: Service, pool_api: Service):
    """A job's flow run gives its pool slot back after PFCON_JOB_IDLE_SECONDS without a step;
    the job's next step starts a new run, and the job keeps its steps across both."""
    client = pool_api.client()
    jid, output_dir = f"pool-idle-{uuid.uuid4().hex[:10]}", f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    client.submit_job(JobType.COPY, jid, {"input_dirs": ["home/alice/feed/in"], "output_dir": output_dir})
    assert wait_status(client, JobType.COPY, jid, timeout=120)["status"] == "finishedSuccessfully"
    deadline = time.monotonic() + IDLE_SECONDS + 30
    while (run := job_runs(pools, jid)[0])["state_type"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run["state_type"] == "CANCELLED", run["state"]
    assert run["state"]["message"] == f"No step was posted for {IDLE_SECONDS} s"
    assert client.get_job_status(JobType.COPY, jid)["compute"]["status"] == "finishedSuccessfully"

    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo again"))  # the copy guard passes
    plugin = wait_status(client, JobType.PLUGIN, jid, timeout=120)
    assert plugin["status"] == "finishedSuccessfully" and plugin["logs"] == "again\n", plugin
    runs = job_runs(pools, jid)
    assert len(runs) == 2 and runs[1]["id"] == run["id"] and runs[0]["state_type"] == "RUNNING"
    assert settled_runs(pools, f"plugin-{jid}")[0]["flow_run_id"] == runs[0]["id"]
