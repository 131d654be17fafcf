"""Faults survived, for real: the service killed with SIGKILL mid-job, the Prefect server
stopped for 20 s, the Docker engine restarted mid-job. Each test runs its own service (and its
own Prefect server or Docker engine) so it stops only what it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from pfconclient.client import JobType

from conftest import TEST_PREFECT_AUTH, Service, _start_service, _stop, basic_auth, free_port, wait_status
from fixtures_tree import make_fslink_fixture
from private_dockerd import PrivateDockerd
from test_fslink_lifecycle import copied_job, job_runs, settled_runs, sh_plugin, submit_and_wait_started

PREFECT = str(Path(sys.executable).with_name("prefect"))


class PrefectServer:
    """A Prefect server process this test starts, stops and starts again (same database),
    requiring the session's credentials."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "PREFECT_HOME": str(self.home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_SERVER_API_AUTH_STRING": TEST_PREFECT_AUTH}
        env.pop("PREFECT_API_URL", None)
        log = (self.home / "server.log").open("a")
        self.process = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                        env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.3)
        raise RuntimeError("Prefect server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=60)
        with socket.socket() as probe:  # nothing listens any more
            assert probe.connect_ex(("127.0.0.1", self.port)) != 0


@contextmanager
def running_prefect_server(home: Path) -> Iterator[PrefectServer]:
    """A Prefect server in the new folder ``home``, stopped at the end unless it is already."""
    home.mkdir()
    server = PrefectServer(home)
    server.start()
    try:
        yield server
    finally:
        if server.process and server.process.poll() is None:
            server.stop()


@pytest.fixture
def prefect_server(session_tmp: Path) -> Iterator[PrefectServer]:
    with running_prefect_server(session_tmp / f"prefect-faults-{os.getpid()}-{time.monotonic_ns()}") as server:
        yield server


def start(session_tmp: Path, name: str, env: dict[str, str], port: int | None = None, prefect_port: int = 0) -> Service:
    service = _start_service(session_tmp, name, "fslink", env, prefect_port, port)
    make_fslink_fixture(service.store_base)
    return service


def killed(service: Service) -> None:
    """SIGKILL the service: the API, the runner and its own Prefect server, one process."""
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(timeout=30)


def own_service(session_tmp: Path, name: str, **settings: str) -> tuple[Service, Callable[[], Service]]:
    """A service with its own Prefect server (and ``settings``), and how to start it again on
    the same ports."""
    prefect_port, api_port = free_port(), free_port()
    env = {"PREFECT_HOME": str(session_tmp / f"prefect-home-{name}"), **settings}
    return start(session_tmp, name, env, api_port, prefect_port), lambda: start(
        session_tmp, name, env, api_port, prefect_port)


def test_prefect_down_for_20_seconds_loses_nothing(session_tmp: Path, prefect_server: PrefectServer, docker_client):
    """The embedded service answers from its job book while Prefect is away: a running plugin
    still completes, and a job accepted meanwhile runs once Prefect is back."""
    env = {"PREFECT_API_URL": prefect_server.url, "PREFECT_HOME": str(prefect_server.home),
           "PFCON_PREFECT_DEADLINE_SECONDS": "5"}
    service = start(session_tmp, "faults-prefect-down", env)
    try:
        client = service.client()
        jid, output_dir = copied_job(service)
        # a plugin that outlives the outage: it must still complete
        submit_and_wait_started(client, jid, sh_plugin(output_dir, 'sleep 30; echo survived > "$2"/out.txt'))
        prefect_server.stop()
        later = f"faults-later-{uuid.uuid4().hex[:8]}"
        accepted = client.submit_job(JobType.COPY, later, {"input_dirs": ["home/alice/feed/in"],
                                                          "output_dir": f"home/alice/{later}"})
        assert accepted["compute"]["status"] == "notStarted"
        down_until = time.monotonic() + 20
        while time.monotonic() < down_until:
            assert client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] in ("started", "finishedSuccessfully")
            assert client.get_job_status(JobType.COPY, later)["compute"]["status"] in ("notStarted", "started",
                                                                                      "finishedSuccessfully")
            assert requests.get(service.url + "health/", timeout=10).status_code == 200
            time.sleep(1)
        prefect_server.start()
        plugin = wait_status(client, JobType.PLUGIN, jid, timeout=120)
        assert plugin["status"] == "finishedSuccessfully", plugin
        assert (service.store_base / output_dir / "out.txt").read_text() == "survived\n"
        assert wait_status(client, JobType.COPY, later, timeout=120)["status"] == "finishedSuccessfully"
    finally:
        _stop(service)


def job_flow_runs(server_url: str, jid: str) -> list[dict]:
    return requests.post(f"{server_url}/flow_runs/filter", timeout=30, auth=basic_auth(TEST_PREFECT_AUTH),
                         json={"flow_runs": {"name": {"any_": [f"job-{jid}"]}}}).json()


def test_job_accepted_while_prefect_is_down_survives_a_kill(session_tmp: Path, prefect_server: PrefectServer,
                                                            docker_client):
    env = {"PREFECT_API_URL": prefect_server.url, "PREFECT_HOME": str(prefect_server.home),
           "PFCON_PREFECT_DEADLINE_SECONDS": "5"}
    api_port = free_port()
    service = start(session_tmp, "faults-book", env, api_port)
    client = service.client()
    jid, output_dir = copied_job(service)
    prefect_server.stop()
    accepted = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, 'echo run >> "$2"/runs.txt; sleep 5'))
    assert accepted["compute"]["status"] == "notStarted"  # in the job book
    killed(service)
    prefect_server.start()
    restarted = start(session_tmp, "faults-book", env, api_port)
    try:
        plugin = wait_status(restarted.client(), JobType.PLUGIN, jid, timeout=120)
        assert plugin["status"] == "finishedSuccessfully", plugin
        assert (restarted.store_base / output_dir / "runs.txt").read_text() == "run\n"
        assert len(job_flow_runs(prefect_server.url, jid)) == 1  # the job's one flow run, resumed
        assert any("Resuming 1 jobs" in line for line in restarted.output)
    finally:
        _stop(restarted)


def test_service_killed_mid_job_completes_it_once(session_tmp: Path, docker_client):
    service, restart = own_service(session_tmp, "faults-killed")
    client = service.client()
    jid, output_dir = copied_job(service)
    submit_and_wait_started(client, jid, sh_plugin(output_dir, 'echo run >> "$2"/runs.txt; sleep 10; echo done'))
    container_id = docker_client.api.inspect_container(jid)["Id"]
    (before,) = job_runs(service, jid)
    killed(service)
    restarted = restart()
    try:
        plugin = wait_status(restarted.client(), JobType.PLUGIN, jid, timeout=180)
        assert plugin["status"] == "finishedSuccessfully", plugin
        assert plugin["logs"].endswith("done\n")
        assert docker_client.api.inspect_container(jid)["Id"] == container_id  # re-attached, not re-run
        assert (restarted.store_base / output_dir / "runs.txt").read_text() == "run\n"  # ran exactly once
        assert any("Resuming 1 jobs" in line for line in restarted.output)
        (plugin_run,) = settled_runs(restarted, f"plugin-{jid}")  # the same task run, finished
        (run,) = job_runs(restarted, jid)  # the same flow run, run again
        assert plugin_run["state_type"] == "COMPLETED" and plugin_run["flow_run_id"] == run["id"] == before["id"]
        assert run["state_type"] == "RUNNING"  # waiting for the job's next step
    finally:
        _stop(restarted)


def test_service_killed_between_steps_goes_on_in_the_same_flow_run(session_tmp: Path, docker_client):
    service, restart = own_service(session_tmp, "faults-between")
    jid, output_dir = copied_job(service)
    (before,) = job_runs(service, jid)
    killed(service)
    restarted = restart()
    try:
        client = restarted.client()
        assert client.get_job_status(JobType.COPY, jid)["compute"]["status"] == "finishedSuccessfully"
        client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, 'echo run >> "$2"/runs.txt'))
        assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
        client.submit_job(JobType.DELETE, jid, {})
        assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
        assert (restarted.store_base / output_dir / "runs.txt").read_text() == "run\n"
        deadline = time.monotonic() + 30
        while (runs := job_runs(restarted, jid))[0]["state_type"] != "COMPLETED":
            assert time.monotonic() < deadline, runs
            time.sleep(0.5)
        assert [run["id"] for run in runs] == [before["id"]]  # one flow run for the whole job
        steps = {step["name"]: step for step in settled_runs(restarted, f"copy-{jid}") + settled_runs(
            restarted, f"plugin-{jid}") + settled_runs(restarted, f"delete-{jid}")}
        assert set(steps) == {f"copy-{jid}", f"plugin-{jid}", f"delete-{jid}"}
        assert {step["flow_run_id"] for step in steps.values()} == {runs[0]["id"]}
    finally:
        _stop(restarted)


@pytest.fixture
def private_dockerd(session_tmp: Path, docker_client) -> Iterator[PrivateDockerd]:
    engine = PrivateDockerd(session_tmp / "dockerd-restart")
    engine.start()
    engine.load(docker_client, "local/busybox:test")
    yield engine
    if engine.process is not None and engine.process.poll() is None:
        engine.stop()


def test_docker_engine_restarted_mid_job_ends_the_job(session_tmp: Path, private_dockerd: PrivateDockerd):
    env = {"DOCKER_HOST": private_dockerd.host, "PREFECT_HOME": str(session_tmp / "prefect-home-dockerd")}
    service = start(session_tmp, "faults-dockerd", env, prefect_port=free_port())
    try:
        client = service.client()
        jid, output_dir = copied_job(service)
        submit_and_wait_started(client, jid, sh_plugin(output_dir, 'sleep 20; echo done > "$2"/out.txt'))
        private_dockerd.stop()
        answers = []
        for _ in range(5):  # the engine is down: a status, or a clear 503, never a 500
            response = requests.get(service.url + f"pluginjobs/{jid}/", headers=service.headers(), timeout=30)
            answers.append((response.status_code, response.json()))
            time.sleep(1)
        private_dockerd.start()
        plugin = wait_status(client, JobType.PLUGIN, jid, timeout=120)
        unavailable = {"message": "The compute environment is unavailable; try again shortly."}
        assert all(code == 200 or (code, body) == (503, unavailable) for code, body in answers), answers
        assert plugin["status"] == "finishedWithError", plugin
        assert plugin["message"] and "Traceback" not in plugin["message"], plugin
        assert not (service.store_base / output_dir / "out.txt").exists()
    finally:
        _stop(service)


def test_service_killed_mid_copy_finishes_the_copy_in_the_same_task_run(session_tmp: Path, docker_client):
    """A copy slow enough to be caught running (a 1 GiB input, copied byte by byte): killed,
    the same attempt runs again after the restart and the job goes on in its flow run."""
    service, restart = own_service(session_tmp, "faults-mid-copy", PFCON_HARDLINK_INPUTS="false")
    big = service.store_base / f"home/alice/big-{uuid.uuid4().hex[:6]}"
    big.mkdir(parents=True)
    with (big / "big.bin").open("wb") as data:
        for _ in range(1024):
            data.write(os.urandom(1024 * 1024))
    client, jid = service.client(), f"faults-copy-{uuid.uuid4().hex[:8]}"
    client.submit_job(JobType.COPY, jid, {"input_dirs": [str(big.relative_to(service.store_base))],
                                         "output_dir": f"home/alice/{jid}"})
    deadline = time.monotonic() + 60
    while client.get_job_status(JobType.COPY, jid)["compute"]["status"] == "notStarted":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (before,) = job_runs(service, jid)
    killed(service)
    restarted = restart()
    try:
        copy = wait_status(restarted.client(), JobType.COPY, jid, timeout=180)
        assert copy["status"] == "finishedSuccessfully", copy
        staged = restarted.store_base / f"key-{jid}" / "incoming" / "big.bin"
        assert staged.stat().st_size == 1024 * 1024 * 1024
        (copy_run,) = settled_runs(restarted, f"copy-{jid}")  # one attempt, finished
        assert copy_run["state_type"] == "COMPLETED" and copy_run["flow_run_id"] == before["id"]
        assert [run["id"] for run in job_runs(restarted, jid)] == [before["id"]]
    finally:
        _stop(restarted)

