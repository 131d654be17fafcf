"""The notification automations on a real Prefect server: a failing plugin and a plugin running
longer than ``PFCON_NOTIFY_RUNNING_SECONDS`` each make Prefect call the ``pfcon-notify`` webhook
block, here a receiver on loopback."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pfconclient.client import JobType

from conftest import Service, _stop, free_port
from fixtures_tree import make_fslink_fixture
from test_faults import own_service
from test_fslink_lifecycle import BUSYBOX, copied_job, sh_plugin, submit_and_wait_started
from test_ops_jobs import run_plugin

RUNNING_SECONDS = 10  # Prefect's least for a proactive trigger


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue]]:
    """An HTTP server on loopback that keeps every POSTed JSON body."""
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def notifying_service(session_tmp: Path, receiver) -> Iterator[Service]:
    service, _ = own_service(session_tmp, f"notify-{uuid.uuid4().hex[:6]}", PFCON_NOTIFY_URL=receiver[0],
                             PFCON_NOTIFY_RUNNING_SECONDS=str(RUNNING_SECONDS))
    make_fslink_fixture(service.store_base)
    yield service
    _stop(service)


def next_call(received: queue.Queue, reason: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        call = received.get(timeout=max(deadline - time.monotonic(), 0.1))
        if call["reason"] == reason:
            return call


def test_a_failing_plugin_and_a_long_one_call_the_webhook(notifying_service: Service, receiver):
    _, received = receiver
    automations = notifying_service.prefect("POST", "/automations/filter", json={}).json()
    assert {automation["name"] for automation in automations} >= {"pfcon-plugin-failed", "pfcon-plugin-running-long"}

    jid, out = copied_job(notifying_service)
    assert run_plugin(notifying_service, jid, out, "echo bad; exit 5", "cube")["status"] == "finishedWithError"
    failed = next_call(received, "plugin-failed")
    assert (failed["jid"], failed["image"], failed["step"], failed["state"]) == (jid, BUSYBOX, "plugin", "Failed")
    assert failed["message"].endswith("Plugin exited with code 5") and failed["task_run"] == f"plugin-{jid}"

    slow, out = copied_job(notifying_service)
    client = notifying_service.client()
    submit_and_wait_started(client, slow, sh_plugin(out, f"sleep {3 * RUNNING_SECONDS}", auid="cube"))
    started = time.monotonic()
    long_running = next_call(received, "plugin-running-long")
    assert time.monotonic() - started >= RUNNING_SECONDS - 2  # not before the limit
    assert (long_running["jid"], long_running["image"], long_running["state"]) == (slow, BUSYBOX, "Running")
    client.delete_job(JobType.PLUGIN, slow)
    assert received.empty()  # nothing about the job that succeeded or the one still in time
