"""``PFCON_MAX_RUNNING_PLUGINS``: plugins beyond the limit wait ``notStarted`` and start in the
order they were posted, never refused; ``PFCON_MAX_WAITING_PLUGINS``: the one load refusal,
503 with ``Retry-After`` and nothing created."""

from __future__ import annotations

import time
from pathlib import Path

import docker
from pfconclient.client import JobType
from pfconclient.exceptions import PfconRequestException
import pytest

from prefect_pfcon.models import JobStep
from prefect_pfcon.names import LEASE_LABEL, PLUGIN_LIMIT

from conftest import Service, _stop, fslink_replica, raw, wait_status
from fixtures_tree import make_fslink_fixture
from test_faults import killed, own_service
from test_fslink_lifecycle import (copied_job, plugin_descriptors, prefect_log_messages, prefect_runs,
                                  settled_runs, sh_plugin)

# waits for a file the test creates in the job's outgoing dir, then writes its output
GATED = 'while [ ! -e "$2/go" ]; do sleep 0.1; done; echo done > "$2/out.txt"'


def post_gated(service: Service, count: int) -> tuple[list[tuple[str, str]], list[str], list[dict]]:
    """``count`` copied jobs whose gated plugins were posted back to back, once the first
    runs: the jobs (jid, output dir), their jids and the POST answers' compute objects."""
    client = service.client()
    jobs = [copied_job(service) for _ in range(count)]
    jids = [jid for jid, _ in jobs]
    answers = [client.submit_job(JobType.PLUGIN, jid, sh_plugin(out, GATED))["compute"] for jid, out in jobs]
    until(lambda: statuses(client, jids[:1])[0]["status"] == "started")
    return jobs, jids, answers


def release(service: Service, output_dir: str) -> None:
    """Let the job's gated plugin end."""
    outgoing = service.store_base / output_dir
    outgoing.mkdir(parents=True, exist_ok=True)
    (outgoing / "go").touch()


def statuses(client, jids: list[str]) -> list[dict]:
    return [client.get_job_status(JobType.PLUGIN, jid)["compute"] for jid in jids]


def until(check, timeout: float = 60, pause: float = 0.2):
    """``check()``'s first true value within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(pause)
    return value


def containers(docker_client: docker.DockerClient, jids: list[str]) -> dict[str, dict]:
    """The plugin containers of ``jids`` that exist, by jid: their engine state."""
    found = {}
    for jid in jids:
        try:
            found[jid] = docker_client.api.inspect_container(JobStep.PLUGIN.container_name(jid))["State"]
        except docker.errors.NotFound:
            pass
    return found


def engine_time(text: str) -> str:
    """A Docker timestamp (RFC 3339, trailing zeros of its nanoseconds dropped) that sorts."""
    seconds, _, fraction = text.rstrip("Z").partition(".")
    return f"{seconds}.{fraction.ljust(9, '0')}"


def plugin_limit(service: Service) -> dict:
    return service.prefect("get", f"/v2/concurrency_limits/{PLUGIN_LIMIT}").json()


def test_plugins_over_the_limit_wait_and_start_in_post_order(session_tmp: Path, fslink_service: Service,
                                                            docker_client: docker.DockerClient):
    with fslink_replica(session_tmp, fslink_service, "queue", {"PFCON_MAX_RUNNING_PLUGINS": "1"}) as service:
        client = service.client()
        assert plugin_limit(service)["limit"] == 1  # the Prefect UI's Concurrency page shows it
        jobs, jids, answers = post_gated(service, 3)
        assert [answer["status"] for answer in answers] == ["notStarted"] * 3  # accepted, no 503

        for position, (jid, out) in enumerate(jobs):
            until(lambda: client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] == "started")
            time.sleep(1)  # the others go on waiting while it runs
            now = statuses(client, jids)
            # the POST's answer (notStarted, created) but for the message
            assert now[position + 1:] == [{**answer, "message": f"waiting for a plugin slot ({ahead} ahead)"}
                                          for ahead, answer in enumerate(answers[position + 1:])]
            assert list(containers(docker_client, jids)) == jids[:position + 1]  # none of the waiting has one
            running = [j for j, state in containers(docker_client, jids).items() if state["Running"]]
            assert running == [jid]
            release(service, out)
            assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"

        engine = containers(docker_client, jids)
        started = [engine_time(engine[jid]["StartedAt"]) for jid in jids]
        finished = [engine_time(engine[jid]["FinishedAt"]) for jid in jids]
        assert started == sorted(started)  # in POST order
        assert all(finished[i] <= started[i + 1] for i in range(2))  # never two at once
        assert all((service.store_base / out / "out.txt").read_text() == "done\n" for _, out in jobs)
        until(lambda: plugin_limit(service)["active_slots"] == 0, timeout=10)  # every slot given back


def test_a_plugin_deleted_while_it_waits_leaves_the_queue(session_tmp: Path, fslink_service: Service,
                                                          docker_client: docker.DockerClient):
    with fslink_replica(session_tmp, fslink_service, "queue-delete", {"PFCON_MAX_RUNNING_PLUGINS": "1"}) as service:
        client = service.client()
        jobs, jids, _ = post_gated(service, 3)
        until(lambda: statuses(client, jids)[2]["message"] == "waiting for a plugin slot (1 ahead)")
        client.delete_job(JobType.PLUGIN, jids[1])
        assert statuses(client, [jids[2]])[0]["message"] == "waiting for a plugin slot (0 ahead)"
        release(service, jobs[0][1])
        until(lambda: statuses(client, [jids[2]])[0]["status"] == "started")
        assert jids[1] not in containers(docker_client, jids)
        cancelled = until(lambda: [run for run in prefect_runs(service, f"plugin-{jids[1]}")
                                   if run["state_type"] == "CANCELLED"], timeout=30)
        assert cancelled[0]["state"]["message"] == "Removed by a client DELETE before it held a plugin slot"
        release(service, jobs[2][1])
        assert wait_status(client, JobType.PLUGIN, jids[2])["status"] == "finishedSuccessfully"
        until(lambda: plugin_limit(service)["active_slots"] == 0, timeout=10)


def test_the_waiting_cap_answers_503_and_creates_nothing(session_tmp: Path, fslink_service: Service,
                                                         docker_client: docker.DockerClient):
    env = {"PFCON_MAX_RUNNING_PLUGINS": "1", "PFCON_MAX_WAITING_PLUGINS": "1"}
    with fslink_replica(session_tmp, fslink_service, "queue-cap", env) as service:
        client = service.client()
        jobs = [copied_job(service) for _ in range(3)]
        jids = [jid for jid, _ in jobs]
        client.submit_job(JobType.PLUGIN, jids[0], sh_plugin(jobs[0][1], GATED))
        until(lambda: statuses(client, jids[:1])[0]["status"] == "started")
        client.submit_job(JobType.PLUGIN, jids[1], sh_plugin(jobs[1][1], GATED))
        refused = raw(service, "post", "pluginjobs/", data={"jid": jids[2], **plugin_descriptors(jobs[2][1])})
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "30"
        assert refused.json() == {"message": "1 plugin jobs already wait for a plugin slot; try again later."}
        with pytest.raises(PfconRequestException) as missing:  # no job record
            client.get_job_status(JobType.PLUGIN, jids[2])
        assert missing.value.code == 404
        time.sleep(2)  # Prefect writes task-run rows from events, a moment after
        assert prefect_runs(service, f"plugin-{jids[2]}") == []  # no task run in the job's flow run
        assert jids[2] not in containers(docker_client, jids)

        release(service, jobs[0][1])
        until(lambda: statuses(client, jids[:2])[1]["status"] == "started")
        client.submit_job(JobType.PLUGIN, jids[2], sh_plugin(jobs[2][1], GATED))  # room again
        for _, out in jobs[1:]:
            release(service, out)
        assert [wait_status(client, JobType.PLUGIN, jid)["status"] for jid in jids] == ["finishedSuccessfully"] * 3


def test_a_plugin_resumed_after_a_kill_keeps_its_slot(session_tmp: Path, docker_client: docker.DockerClient):
    """Killed (its Prefect server with it) while one plugin runs and one waits: the running one
    re-attaches in the slot it held (its lease renewed, long past the lease's 60 s), the
    waiting one goes on waiting until it ends."""
    service, restart = own_service(session_tmp, "queue-killed", PFCON_MAX_RUNNING_PLUGINS="1")
    client = service.client()
    jobs, jids, _ = post_gated(service, 2)
    until(lambda: statuses(client, jids)[1]["message"] == "waiting for a plugin slot (0 ahead)")
    container_id = docker_client.api.inspect_container(jids[0])["Id"]
    killed(service)
    killed_at = time.monotonic()
    restarted = restart()
    try:
        client = restarted.client()
        # two leases (60 s each, renewed at restart, then every 45 s) and Prefect's sweep (15 s)
        while time.monotonic() < killed_at + 135:
            assert [compute["status"] for compute in statuses(client, jids)] == ["started", "notStarted"]
            assert plugin_limit(restarted)["active_slots"] == 1
            time.sleep(2)
        assert docker_client.api.inspect_container(jids[0])["Id"] == container_id  # re-attached
        (first,) = prefect_runs(restarted, f"plugin-{jids[0]}")
        assert any(line.startswith("Re-attached in the plugin slot it held")
                   for line in prefect_log_messages(restarted, first["id"]))
        release(restarted, jobs[0][1])
        assert wait_status(client, JobType.PLUGIN, jids[0])["status"] == "finishedSuccessfully"
        until(lambda: statuses(client, jids)[1]["status"] == "started")
        release(restarted, jobs[1][1])
        assert wait_status(client, JobType.PLUGIN, jids[1])["status"] == "finishedSuccessfully"
        until(lambda: plugin_limit(restarted)["active_slots"] == 0, timeout=10)
    finally:
        _stop(restarted)


def test_without_a_limit_plugins_take_no_slot(fslink_service: Service, docker_client: docker.DockerClient):
    """The default: no queue, no slot, no lease on the container, nothing asked of Prefect."""
    make_fslink_fixture(fslink_service.store_base)
    client = fslink_service.client()
    (job,), (jid,), _ = post_gated(fslink_service, 1)
    assert LEASE_LABEL not in docker_client.api.inspect_container(jid)["Config"]["Labels"]
    assert plugin_limit(fslink_service).get("active_slots", 0) == 0  # (the limit exists if other tests made it)
    assert client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] == "started"
    release(fslink_service, job[1])
    assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
    (run,) = settled_runs(fslink_service, f"plugin-{jid}")
    assert not [line for line in prefect_log_messages(fslink_service, run["id"]) if "slot" in line]
