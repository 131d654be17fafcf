"""The janitor on a real service: it removes what client DELETEs left behind (an ended
plugin container, key dirs) and nothing else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pfconclient.client import JobType

from conftest import Service, _start_replica, _stop, wait_status
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import copied_job, sh_plugin

FLOW_RUN_LABEL = "io.prefect.flow-run-id"


@pytest.fixture(scope="module")
def service(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    env = {"PFCON_JANITOR_SECONDS": "1", "PFCON_JANITOR_GRACE_SECONDS": "0"}
    replica = _start_replica(session_tmp, fslink_service, "fslink", env, name="janitor")
    make_fslink_fixture(replica.store_base)
    yield replica
    _stop(replica)


def eventually(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def test_janitor_removes_only_what_clients_deleted(service: Service, docker_client):
    client, store = service.client(), service.store_base
    forgotten, _ = copied_job(service)
    kept, kept_output = copied_job(service)
    client.submit_job(JobType.PLUGIN, kept, sh_plugin(kept_output, "echo kept"))
    assert wait_status(client, JobType.PLUGIN, kept)["status"] == "finishedSuccessfully"
    stranger = store / "key-stranger"  # a key dir Prefect knows nothing about
    stranger.mkdir()
    # an ended container whose run a client removed but whose removal failed
    orphan_jid, orphan_output = copied_job(service)
    client.submit_job(JobType.PLUGIN, orphan_jid, sh_plugin(orphan_output, "echo orphan"))
    assert wait_status(client, JobType.PLUGIN, orphan_jid)["status"] == "finishedSuccessfully"
    docker_client.api.rename(orphan_jid, f"{orphan_jid}-left")  # so DELETE cannot find it by name
    # and containers not ours, or ours from an unknown Prefect server, that must stay
    unlabelled = docker_client.containers.run("local/busybox:test", "true", name=f"not-ours-{uuid.uuid4().hex[:6]}",
                                              detach=True, network_mode="none")
    foreign = docker_client.containers.run("local/busybox:test", "true", detach=True, network_mode="none",
                                           name=f"foreign-{uuid.uuid4().hex[:6]}",
                                           labels={FLOW_RUN_LABEL: str(uuid.uuid4()),
                                                   "org.chrisproject.job_type": "plugin"})
    # and one carrying the removed run's id, but not our jid label: not ours either
    orphan_run = docker_client.api.inspect_container(f"{orphan_jid}-left")["Config"]["Labels"][FLOW_RUN_LABEL]
    impostor = docker_client.containers.run("local/busybox:test", "true", detach=True, network_mode="none",
                                            name=f"impostor-{uuid.uuid4().hex[:6]}",
                                            labels={FLOW_RUN_LABEL: orphan_run, "org.chrisproject.job_type": "plugin"})
    try:
        for job_type in (JobType.COPY, JobType.PLUGIN):
            client.delete_job(job_type, orphan_jid)
        client.delete_job(JobType.COPY, forgotten)  # the client forgets the job, its data stays
        assert (store / f"key-{forgotten}").is_dir()

        assert eventually(lambda: not (store / f"key-{forgotten}").exists())
        assert eventually(lambda: not docker_client.containers.list(all=True, ignore_removed=True, filters={"name": f"{orphan_jid}-left"}))
        assert not (store / f"key-{orphan_jid}").exists()
        time.sleep(3)  # a few more sweeps
        assert (store / f"key-{kept}").is_dir() and stranger.is_dir()
        assert docker_client.api.inspect_container(kept)["State"]["Status"] == "exited"  # a live job's container
        unlabelled.reload()  # raises if the janitor removed it
        foreign.reload()
        impostor.reload()
    finally:
        for container in (unlabelled, foreign, impostor):
            container.remove(force=True)
