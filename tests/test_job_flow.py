"""A pfcon job is one Prefect flow run ``job-<jid>``, its steps task runs of it: through the
API, a whole lifecycle, a failed step posted again, DELETEs of every step, an idle job."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pfconclient.client import JobType

from conftest import Service, fslink_replica, wait_status
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import copied_job, job_runs, settled_runs, sh_plugin

IDLE_SECONDS = 6


@pytest.fixture(scope="module")
def service(fslink_service: Service) -> Service:
    make_fslink_fixture(fslink_service.store_base)
    return fslink_service


def ended_job_run(service: Service, jid: str, timeout: float = 60) -> dict:
    """The job's newest flow run, once it ended."""
    deadline = time.monotonic() + timeout
    while (runs := job_runs(service, jid)) and runs[0]["state_type"] in ("PENDING", "RUNNING", "SCHEDULED"):
        assert time.monotonic() < deadline, runs[0]
        time.sleep(0.3)
    return runs[0]


def test_a_lifecycle_is_one_flow_run_with_a_task_run_per_step(service: Service):
    client = service.client()
    jid, output_dir = copied_job(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo first; exit 3"))
    assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedWithError"
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, 'cp -r "$1"/. "$2"/; echo second'))
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"

    run = ended_job_run(service, jid)
    assert len(job_runs(service, jid)) == 1
    assert (run["state_type"], run["state"]["message"]) == ("COMPLETED", "The job's data was deleted")
    assert {f"jid:{jid}", "pfcon"} <= set(run["tags"])
    plugins = settled_runs(service, f"plugin-{jid}", count=2)
    assert sorted(step["state_type"] for step in plugins) == ["COMPLETED", "FAILED"]  # the retry: a new task run
    steps = [*settled_runs(service, f"copy-{jid}"), *plugins, *settled_runs(service, f"delete-{jid}")]
    assert {step["flow_run_id"] for step in steps} == {run["id"]}
    for step in steps:
        kind = step["name"].split("-", 1)[0]
        assert {f"jid:{jid}", f"step:{kind}", "pfcon"} <= set(step["tags"]), step
    assert {"image:local/busybox:test", "compute:docker"} <= set(plugins[0]["tags"])


def test_deleting_every_step_cancels_the_flow_run(service: Service):
    client = service.client()
    jid, _ = copied_job(service)
    client.delete_job(JobType.COPY, jid)
    run = ended_job_run(service, jid)
    assert (run["state_type"], run["state"]["message"]) == ("CANCELLED", "Clients DELETEd all of the job's steps")


@pytest.fixture(scope="module")
def impatient(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    """A replica whose jobs' flow runs end after IDLE_SECONDS without a step."""
    with fslink_replica(session_tmp, fslink_service, "job-flow-idle",
                        {"PFCON_JOB_IDLE_SECONDS": str(IDLE_SECONDS)}) as replica:
        yield replica


def test_an_idle_job_ends_and_its_next_step_starts_another_flow_run(impatient: Service):
    client = impatient.client()
    jid, output_dir = copied_job(impatient)
    run = ended_job_run(impatient, jid, timeout=IDLE_SECONDS + 60)
    assert (run["state_type"], run["state"]["message"]) == ("CANCELLED", f"No step was posted for {IDLE_SECONDS} s")
    assert client.get_job_status(JobType.COPY, jid)["compute"]["status"] == "finishedSuccessfully"
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, f"echo later-{uuid.uuid4().hex[:6]}"))
    assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
    later, first = job_runs(impatient, jid)
    assert first["id"] == run["id"] and later["id"] != run["id"]
    (plugin,) = settled_runs(impatient, f"plugin-{jid}")
    assert plugin["flow_run_id"] == later["id"]
