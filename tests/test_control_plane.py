"""The control plane is the service's alone: its Prefect server runs in the service's own
process, answers only with the credentials and grants CORS to its own UI only, `up` refuses a
Prefect port another process holds, the state dir and its secrets are the owner's only, and
one SIGTERM stops a service within seconds, its pending Prefect log lines sent first."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pfconclient.client import JobType
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import Service, _start_service, _stop, free_port
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import copy_inputs, job_runs, settled_runs, sh_plugin, submit_and_wait_started

FOREIGN_ORIGINS = ("http://evil.example", "http://127.0.0.1:1", "null")
STOP_BOUND_SECONDS = 15  # a behaviour check (seconds, not a minute), not a benchmark


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ui_origin(service: Service) -> str:
    return service.prefect_api_url.removesuffix("/api")


def test_prefect_api_answers_only_with_the_credentials(fslink_service: Service):
    prefect = fslink_service.prefect
    for auth in (None, ("pfcon-tests", "wrong"), ("admin", "")):
        assert prefect("post", "/flow_runs/filter", json={}, auth=auth).status_code == 401
    assert prefect("post", "/flow_runs/filter", json={}).status_code == 200
    # a secret block field cannot be read
    documents = prefect("post", "/block_documents/filter", json={}).json()
    storage = next(document for document in documents if document["name"] == "fslink-storage")
    document = f"/block_documents/{storage['id']}"
    assert prefect("get", document, params={"include_secrets": "true"}, auth=None).status_code == 401
    assert prefect("get", document).status_code == 200
    # nor a storage block on "/" saved
    name = f"h1-root-{uuid.uuid4().hex[:8]}"
    rooted = {"name": name, "block_type_id": storage["block_type_id"], "block_schema_id": storage["block_schema_id"],
              "data": {**storage["data"], "store_base": "/"}}
    assert prefect("post", "/block_documents/", json=rooted, auth=None).status_code == 401
    assert prefect("post", "/block_documents/filter", json={"block_documents": {"name": {"any_": [name]}}}).json() == []
    # nor a run created for the runner to execute
    deployment = prefect("get", "/deployments/name/pfcon-job/pfcon").json()
    assert prefect("post", f"/deployments/{deployment['id']}/create_flow_run", json={}, auth=None).status_code == 401
    # health stays open: `up` and probes wait on it
    assert prefect("get", "/health", auth=None).status_code == 200


def test_event_stream_answers_only_with_the_credentials(fslink_service: Service):
    url = fslink_service.prefect_api_url.replace("http://", "ws://", 1) + "/events/out"
    with connect(url, subprotocols=["prefect"], open_timeout=30) as socket_:
        socket_.send(json.dumps({"type": "auth", "token": "pfcon-tests:wrong"}))
        with pytest.raises(ConnectionClosed) as closed:
            socket_.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with connect(url, subprotocols=["prefect"], open_timeout=30) as socket_:
        socket_.send(json.dumps({"type": "auth", "token": fslink_service.prefect_auth}))
        assert json.loads(socket_.recv(timeout=30)) == {"type": "auth_success"}


def test_cors_grants_only_the_prefect_ui_origin(fslink_service: Service):
    prefect = fslink_service.prefect
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    for origin in FOREIGN_ORIGINS:
        answers = [
            prefect("options", "/flow_runs/filter", headers={"Origin": origin, **preflight}, auth=None),
            prefect("get", "/health", headers={"Origin": origin}, auth=None),
            prefect("post", "/flow_runs/filter", json={}, headers={"Origin": origin}),
        ]
        assert [answer.headers.get("access-control-allow-origin") for answer in answers] == [None] * 3, origin
        assert answers[0].status_code == 400 and answers[2].status_code == 200
    own = ui_origin(fslink_service)
    granted = prefect("options", "/flow_runs/filter", headers={"Origin": own, **preflight}, auth=None)
    assert granted.status_code == 200 and granted.headers["access-control-allow-origin"] == own
    read = prefect("post", "/flow_runs/filter", json={}, headers={"Origin": own})
    assert read.headers["access-control-allow-origin"] == own


def test_up_refuses_a_prefect_port_another_process_holds(session_tmp: Path):
    state_dir = session_tmp / "state-h1-taken"
    env = {**os.environ, "PFCON_STATE_DIR": str(state_dir), "PREFECT_HOME": str(session_tmp / "prefect-home-h1-taken")}
    env.pop("PREFECT_API_URL", None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        holder.setblocking(False)
        port = holder.getsockname()[1]
        command = [sys.executable, "-m", "prefect_pfcon.cli", "up", "--port", str(free_port()),
                   "--prefect-port", str(port), "--storebase", str(session_tmp / "storeBase-h1-taken")]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"prefect-pfcon: port {port} on 127.0.0.1 is already in use by another process; "
            "stop it or choose another --prefect-port"
        ]
        with pytest.raises(BlockingIOError):  # nothing connected to the holder's port
            holder.accept()
    assert not (session_tmp / "prefect-home-h1-taken" / "prefect.db").exists()  # no server was started


TCP_LISTEN = "0A"  # socket state in /proc/net/tcp


def listening_sockets(port: int) -> set[str]:
    """The inodes of the sockets listening on loopback ``port`` (Linux ``/proc/net/tcp``)."""
    address = f"{int.from_bytes(socket.inet_aton('127.0.0.1'), sys.byteorder):08X}:{port:04X}"
    with open("/proc/net/tcp") as table:
        return {fields[9] for line in table
                if len(fields := line.split()) > 9 and fields[1] == address and fields[3] == TCP_LISTEN}


def sockets_of(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds."""
    targets = []
    for descriptor in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{descriptor}"))
        except FileNotFoundError:
            continue
    return {target[8:-1] for target in targets if target.startswith("socket:[")}


def test_prefect_server_is_served_by_the_service_process(fslink_service: Service):
    """One process: the Prefect server listens on a socket the service's own process holds,
    and the service has started no child process."""
    pid = fslink_service.process.pid
    port = int(fslink_service.prefect_api_url.removesuffix("/api").rsplit(":", 1)[1])
    listening = listening_sockets(port)
    assert listening and listening <= sockets_of(pid)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # the check tells processes apart
        assert not listening & sockets_of(other.pid)
    finally:
        other.kill()
        other.wait()
    children = [child for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    assert children == []


def test_own_server_keeps_private_secrets_and_stops_on_one_sigterm(session_tmp: Path, docker_client):
    name, prefect_port, api_port = "h1-own", free_port(), free_port()
    state_dir = session_tmp / f"state-{name}"
    state_dir.mkdir()
    state_dir.chmod(0o755)  # looser than it should be: `up` tightens it
    env = {
        "PREFECT_HOME": str(session_tmp / f"prefect-home-{name}"),
        # credentials and JWT key made by `up` itself, into the state dir
        "SECRET_KEY": None, "PREFECT_API_AUTH_STRING": None, "PREFECT_SERVER_API_AUTH_STRING": None,
        # log lines leave only in batches a minute apart, or when drained on the way out
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "60",
    }
    service = _start_service(session_tmp, name, "fslink", env, prefect_port, api_port)
    jid = f"h1-stop-{uuid.uuid4().hex[:8]}"
    try:
        assert mode(state_dir) == 0o700
        assert mode(session_tmp / f"prefect-home-{name}") == 0o700  # its database holds block secrets
        secrets_made = {secret: (state_dir / secret).read_text() for secret in ("secret_key", "prefect-auth")}
        assert all(mode(state_dir / secret) == 0o600 for secret in secrets_made)
        assert re.fullmatch(r"admin:[A-Za-z0-9_-]{40,}", secrets_made["prefect-auth"])
        assert [path.name for path in state_dir.iterdir() if path.name.startswith(".")] == []
        assert service.prefect_auth == secrets_made["prefect-auth"]
        assert service.prefect("post", "/flow_runs/filter", json={}, auth=None).status_code == 401
        assert service.prefect("post", "/flow_runs/filter", json={}).status_code == 200

        make_fslink_fixture(service.store_base)
        output_dir = f"home/alice/feed/out-{jid}"
        assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
        marker = f"{jid}-says-42"  # the script prints it; the command line (also logged) does not hold it
        submit_and_wait_started(service.client(), jid, sh_plugin(output_dir, f'echo {jid}-says-$((6*7)); sleep 300'))
        deadline = time.monotonic() + 60
        while not any(marker in line for line in service.output):  # logged, not yet sent
            assert time.monotonic() < deadline, "".join(service.output[-30:])
            time.sleep(0.2)
        (job_run,) = job_runs(service, jid)
        stopped_at = datetime.now(timezone.utc)
        started = time.monotonic()
        service.process.terminate()
        service.process.wait(timeout=60)
        assert time.monotonic() - started < STOP_BOUND_SECONDS, "".join(service.output[-30:])
        assert service.process.returncode == 0
        with socket.socket() as probe:  # its Prefect server stopped with it
            assert probe.connect_ex(("127.0.0.1", prefect_port)) != 0
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()

    restarted = _start_service(session_tmp, name, "fslink", env, prefect_port, api_port)
    try:
        assert {secret: (state_dir / secret).read_text() for secret in secrets_made} == secrets_made
        run = settled_runs(restarted, f"plugin-{jid}")[0]
        shipped = [log for log in restarted.prefect("post", "/logs/filter", json={
            "logs": {"task_run_id": {"any_": [run["id"]]}}, "limit": 200}).json() if marker in log["message"]]
        # sent by the stopped service (the restarted one re-attaches and may log it again, later)
        assert any(datetime.fromisoformat(log["timestamp"]) < stopped_at for log in shipped), shipped
        assert [run["id"] for run in job_runs(restarted, jid)] == [job_run["id"]]  # the job goes on in its flow run
        assert run["flow_run_id"] == job_run["id"]
        restarted.client().delete_job(JobType.PLUGIN, jid)
    finally:
        _stop(restarted)
        subprocess.run(["docker", "rm", "-f", jid], capture_output=True, check=False)
