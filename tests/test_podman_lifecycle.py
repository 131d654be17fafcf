"""fslink lifecycles over HTTP with python-pfconclient where plugins run on Podman through its
Docker-compatible API (CONTAINER_ENV=podman, DOCKER_HOST the socket of the podman service
scripts/test.sh starts): success, failure, DELETE while running, and status polled every 20 ms
through many short plugins' ends (podman's transient ``stopped`` must never read ``undefined``)."""

from __future__ import annotations

import time
import uuid

import docker
import pytest
from pfconclient.client import JobType

from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture
from test_fslink_lifecycle import (
    copy_inputs,
    delete_and_forget,
    settled_runs,
    sh_plugin,
    submit_and_wait_started,
)

FAST_POLL_SECONDS = 0.02
FAST_POLL_JOBS = 10
AFTER_END_SECONDS = 1.0  # podman cleans an exited container up some 0.1 s after it stops


@pytest.fixture(scope="module")
def service(podman_service: Service) -> Service:
    make_fslink_fixture(podman_service.store_base)
    return podman_service


@pytest.fixture(scope="module")
def podman(podman_host: str) -> docker.DockerClient:
    """A Docker SDK client on the podman socket, checked to be podman's."""
    client = docker.DockerClient(base_url=podman_host)
    assert "Podman Engine" in [component["Name"] for component in client.version()["Components"]]
    return client


def copied_job(service: Service) -> tuple[str, str]:
    """A new jid whose copy step finished; the jid and a fresh output dir."""
    jid, output_dir = f"h8-podman-{uuid.uuid4().hex[:10]}", f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
    return jid, output_dir


def test_server_info(service):
    info = service.client().get_server_info()
    assert (info["container_env"], info["compute_volume_type"]) == ("docker", "host")  # podman: docker's alias


def test_full_lifecycle_on_podman(service, podman, docker_client):
    client = service.client()
    jid, output_dir = copied_job(service)
    script = 'echo start; cp -r "$1"/. "$2"/; ulimit -n; echo done'
    answer = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script))
    assert answer["compute"]["status"] == "notStarted"
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert (plugin["status"], plugin["message"]) == ("finishedSuccessfully", "exited"), plugin
    start, nofile, done = plugin["logs"].splitlines()
    assert (start, done) == ("start", "done") and int(nofile) > 0
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == FSLINK_STAGED

    container = podman.api.inspect_container(jid)  # the container ran on podman, not on the shared dockerd
    assert container["Config"]["Labels"]["io.prefect.task-run-id"] == settled_runs(service, f"plugin-{jid}")[0]["id"]
    assert container["Config"]["Labels"]["org.test.suite"] == "prefect-pfcon"
    assert container["HostConfig"]["NetworkMode"] == "none"
    assert container["HostConfig"]["Memory"] == 200 * 2**20
    assert container["HostConfig"]["NanoCpus"] == 10**9
    assert not docker_client.containers.list(all=True, ignore_removed=True, filters={"name": jid})

    delete_and_forget(client, jid)
    assert not podman.containers.list(all=True, ignore_removed=True, filters={"name": jid})
    assert not (service.store_base / f"key-{jid}").exists()


def test_failing_plugin(service, podman):
    client = service.client()
    jid, output_dir = copied_job(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo failing; exit 3"))
    result = wait_status(client, JobType.PLUGIN, jid)
    assert (result["status"], result["message"], result["logs"]) == ("finishedWithError", "exited", "failing\n")
    deadline = time.monotonic() + 15  # the container exits just before its run fails
    while (run := settled_runs(service, f"plugin-{jid}")[0])["state_type"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert run["state_type"] == "FAILED"
    client.delete_job(JobType.PLUGIN, jid)
    assert not podman.containers.list(all=True, ignore_removed=True, filters={"name": jid})


def test_delete_removes_a_running_container(service, podman):
    client = service.client()
    jid, output_dir = copied_job(service)
    submit_and_wait_started(client, jid, sh_plugin(output_dir, "echo start; sleep 600"))
    assert podman.api.inspect_container(jid)["State"]["Running"]
    client.delete_job(JobType.PLUGIN, jid)
    assert not podman.containers.list(all=True, ignore_removed=True, filters={"name": jid})
    assert (service.store_base / f"key-{jid}" / "incoming" / "a.txt").exists()  # data stays
    deadline = time.monotonic() + 30
    while (run := settled_runs(service, f"plugin-{jid}")[0])["state_type"] not in ("CANCELLED", "CANCELLING"):
        assert time.monotonic() < deadline, run["state_type"]
        time.sleep(0.2)


def poll_through_end(client, jid: str) -> list[tuple[str, str]]:
    """Every (status, message) the job reads, polled every 20 ms until it ends and for a second after."""
    seen: list[tuple[str, str]] = []
    ended_at = None
    deadline = time.monotonic() + 120
    while ended_at is None or time.monotonic() < ended_at + AFTER_END_SECONDS:
        assert time.monotonic() < deadline, seen[-5:]
        compute = client.get_job_status(JobType.PLUGIN, jid)["compute"]
        if not seen or seen[-1] != (compute["status"], compute["message"]):
            seen.append((compute["status"], compute["message"]))
        if ended_at is None and compute["status"] in ("finishedSuccessfully", "finishedWithError", "undefined"):
            ended_at = time.monotonic()
        time.sleep(FAST_POLL_SECONDS)
    return seen


def test_fast_polling_never_reads_undefined(service):
    """Podman shows a container that has just exited as ``stopped`` (exit code known, cleanup
    pending) for about 0.1 s; CUBE cancels a plugin it sees ``undefined``. Each job ends
    ``finishedSuccessfully``/``exited`` and stays so."""
    client = service.client()
    for _ in range(FAST_POLL_JOBS):
        jid, output_dir = copied_job(service)
        client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo hi"))
        seen = poll_through_end(client, jid)
        statuses = [status for status, _ in seen]
        assert "undefined" not in statuses and set(statuses) <= {"notStarted", "started", "finishedSuccessfully"}, seen
        assert seen[statuses.index("finishedSuccessfully"):] == [("finishedSuccessfully", "exited")], (jid, seen)
        client.delete_job(JobType.PLUGIN, jid)
