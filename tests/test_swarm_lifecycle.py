"""fslink lifecycles over HTTP with python-pfconclient where the plugin runs as a real Docker
Swarm service (CONTAINER_ENV=swarm, on the tests' own single-node swarm): success, failure,
and DELETE while running."""

from __future__ import annotations

import time

import pytest
from pfconclient.client import JobType

from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture
from prefect_pfcon.blocks.compute import SwarmCompute
from private_dockerd import PrivateDockerd
from test_fslink_lifecycle import (
    copied_job,
    delete_and_forget,
    finished_plugin,
    settled_runs,
    sh_plugin,
    submit_and_wait_started,
)

INTERFACES = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"


@pytest.fixture(scope="module")
def service(swarm_service: Service) -> Service:
    make_fslink_fixture(swarm_service.store_base)
    return swarm_service


@pytest.fixture(scope="module")
def swarm(swarm_engine: PrivateDockerd) -> SwarmCompute:
    return SwarmCompute(docker_host=swarm_engine.host)


def test_server_info(service):
    info = service.client().get_server_info()
    assert (info["container_env"], info["compute_volume_type"]) == ("swarm", "host")


def test_full_lifecycle_through_swarm(service, swarm):
    client = service.client()
    jid, output_dir = copied_job(service)
    script = f'echo start; {INTERFACES}; cp -r "$1"/. "$2"/; echo done'
    answer = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script))
    assert answer["compute"]["status"] == "notStarted"
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert (plugin["status"], plugin["message"]) == ("finishedSuccessfully", "finished"), plugin
    assert plugin["logs"] == "start\nlo\ndone\n"  # the plugin had no network interface but lo
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == FSLINK_STAGED
    spec = swarm.client.api.inspect_service(jid)["Spec"]  # a service named after the jid
    assert spec["Labels"]["org.test.suite"] == "prefect-pfcon"
    assert spec["Labels"]["io.prefect.task-run-id"] == settled_runs(service, f"plugin-{jid}")[0]["id"]
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none" and "Networks" not in spec["TaskTemplate"]
    delete_and_forget(client, jid)
    assert swarm.state(jid) is None


def test_failing_plugin(service):
    _, _, result = finished_plugin(service, "echo failing; exit 3")
    assert (result["status"], result["message"]) == ("finishedWithError", "started")  # the task's message
    assert result["logs"] == "failing\n"


def test_delete_removes_a_running_service(service, swarm):
    client = service.client()
    jid, output_dir = copied_job(service)
    submit_and_wait_started(client, jid, sh_plugin(output_dir, "echo start; sleep 600"))
    (task,) = swarm.client.api.tasks(filters={"service": jid})
    container_id = task["Status"]["ContainerStatus"]["ContainerID"]
    client.delete_job(JobType.PLUGIN, jid)
    assert swarm.state(jid) is None
    deadline = time.monotonic() + 60  # the node's agent kills and removes the task's container
    while any(c.id == container_id for c in swarm.client.containers.list(all=True, ignore_removed=True)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (service.store_base / f"key-{jid}" / "incoming" / "a.txt").exists()  # data stays
    (run,) = settled_runs(service, f"plugin-{jid}")
    assert run["state_type"] in ("CANCELLED", "CANCELLING")
