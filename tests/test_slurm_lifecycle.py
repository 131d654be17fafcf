"""fslink lifecycles over HTTP with python-pfconclient where the plugin runs as a real
Slurm job (CONTAINER_ENV=slurm): success, failure, out-of-memory and DELETE while running."""

from __future__ import annotations

import subprocess
import time

import pytest
from pfconclient.client import JobType

from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture
from test_fslink_lifecycle import (
    copied_job,
    delete_and_forget,
    finished_plugin,
    prefect_log_messages,
    settled_runs,
    sh_plugin,
    submit_and_wait_started,
)
from test_slurm_compute import containers_named, sacct


@pytest.fixture(scope="module")
def service(slurm_service: Service) -> Service:
    make_fslink_fixture(slurm_service.store_base)
    return slurm_service


def squeue(name: str) -> str:
    return subprocess.run(["squeue", "--noheader", f"--name={name}", "--format=%T"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_server_info(service):
    info = service.client().get_server_info()
    assert (info["container_env"], info["storage_env"]) == ("slurm", "fslink")


def test_full_lifecycle_through_slurm(service):
    client = service.client()
    jid, output_dir = copied_job(service)
    script = 'echo start; cp -r "$1"/. "$2"/; echo done'
    answer = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script, type="ds"))
    assert answer["compute"]["status"] == "notStarted"
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    assert plugin["message"].startswith("Slurm job ") and plugin["message"].endswith(" COMPLETED")
    assert plugin["logs"] == "start\ndone\n"
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == FSLINK_STAGED
    deadline = time.monotonic() + 10
    while not sacct(jid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sacct(jid) == [f"{jid}|COMPLETED|200M|1"]  # one Slurm job, named after the jid
    (run,) = settled_runs(service, f"plugin-{jid}")
    deadline = time.monotonic() + 15
    while "done" not in prefect_log_messages(service, run["id"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert {"start", "done"} <= set(prefect_log_messages(service, run["id"]))

    delete_and_forget(client, jid)


def test_failing_plugin(service):
    _, _, result = finished_plugin(service, "echo failing; exit 3")
    assert result["status"] == "finishedWithError"
    assert result["message"].endswith("FAILED (exit code 3)") and result["logs"] == "failing\n"


def test_memory_hog_is_killed(service):
    _, _, result = finished_plugin(service, "echo hog; x=a; while true; do x=$x$x; done", memory_limit=32)
    assert result["status"] == "finishedWithError"
    assert result["message"].endswith("FAILED (exit code 137)")


def test_delete_cancels_a_running_slurm_job(service):
    client = service.client()
    jid, output_dir = copied_job(service)
    submit_and_wait_started(client, jid, sh_plugin(output_dir, "echo start; sleep 600"))
    assert squeue(jid) == "RUNNING"
    client.delete_job(JobType.PLUGIN, jid)
    deadline = time.monotonic() + 30
    while (squeue(jid) or containers_named(jid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert squeue(jid) == "" and containers_named(jid) == []
    assert (service.store_base / f"key-{jid}" / "incoming" / "a.txt").exists()  # data stays
    (run,) = settled_runs(service, f"plugin-{jid}")
    assert run["state_type"] in ("CANCELLED", "CANCELLING")
