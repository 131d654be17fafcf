"""A job's env values reach the plugin and nowhere else, on the real service with each
compute backend: not in Prefect's records (runs, logs, artifacts, events, blocks), not in any
file of the state dir (the job book and the Slurm work dir included), not in Kubernetes objects
other than the job's Secret. And every line a chatty plugin prints reaches Prefect's logs."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pfconclient.client import JobType

from conftest import Service, raw, wait_status
from fixtures_tree import make_fslink_fixture
from prefect_pfcon.blocks.compute import KubernetesCompute
from prefect_pfcon.blocks.compute.lines import MAX_LINE_BYTES
from prefect_pfcon.job_secrets import MASK
from test_fslink_lifecycle import (
    copy_inputs,
    delete_and_forget,
    prefect_log_messages,
    prefect_logs,
    prefect_runs,
    settled_runs,
    sh_plugin,
)

# prints the token, writes it to its outputs, and shows its whole env
TOKEN_SCRIPT = 'echo "token: $CHRIS_USER_TOKEN"; echo "$CHRIS_USER_TOKEN" > "$2/token.txt"; env; sleep 2'
CHATTY_LINES = 60_000
CHATTY_SCRIPT = (f'i=1; while [ $i -le {CHATTY_LINES} ]; do echo "line $i"; i=$((i+1)); done; '
                 "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo end")


def copied_job(service: Service) -> tuple[str, str]:
    """A new jid whose copy step finished, and a fresh output dir."""
    jid, output_dir = f"h2-{uuid.uuid4().hex[:10]}", f"home/alice/feed/out-h2-{uuid.uuid4().hex[:6]}"
    assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
    return jid, output_dir


def new_token() -> str:
    return f"h2-token-{uuid.uuid4().hex}"


def prefect_answers(service: Service, jid: str, since: datetime) -> dict[str, str]:
    """What Prefect's API tells about the jid's runs, and all events and block documents."""
    runs = service.prefect("post", "/flow_runs/filter", json={"flow_runs": {"tags": {"all_": [f"jid:{jid}"]}}}).json()
    ids = [run["id"] for run in runs]
    assert ids
    answers = {"flow runs": json.dumps(runs)}
    answers["task runs"] = service.prefect("post", "/task_runs/filter", json={
        "flow_runs": {"id": {"any_": ids}}}).text
    answers["logs"] = json.dumps([prefect_logs(service, run_id, of="flow_run_id") for run_id in ids])
    answers["artifacts"] = service.prefect("post", "/artifacts/filter", json={
        "flow_runs": {"id": {"any_": ids}}}).text
    answers["blocks"] = service.prefect("post", "/block_documents/filter", json={"include_secrets": True}).text
    deadline = time.monotonic() + 30  # the server stores events a moment after they happen
    events = prefect_events(service, since)
    while f"plugin-{jid}" not in {event["resource"].get("prefect.resource.name") for event in events}:
        assert time.monotonic() < deadline
        time.sleep(1)
        events = prefect_events(service, since)
    answers["events"] = json.dumps(events)
    return answers


def prefect_events(service: Service, since: datetime) -> list[dict]:
    """Every event since ``since``."""
    until = datetime.now(timezone.utc) + timedelta(seconds=5)
    page = service.prefect("post", "/events/filter", json={
        "filter": {"occurred": {"since": since.isoformat(), "until": until.isoformat()}}, "limit": 50}).json()
    events = page["events"]
    while page.get("next_page"):
        page = service.prefect("get", page["next_page"].removeprefix(service.prefect_api_url)).json()
        events += page["events"]
    return events


def files_holding(directory: Path, value: str) -> list[str]:
    """Files under ``directory`` whose bytes contain ``value``."""
    needle = value.encode()
    return [str(path) for path in directory.rglob("*") if path.is_file() and needle in path.read_bytes()]


def run_token_plugin(service: Service, token: str, process_list: bool = False) -> tuple[str, dict, datetime]:
    """Copy, then a plugin with the token in its env until it ends; jid, compute, start time.
    The plugin's outputs show it got the token; with ``process_list``, no process shows it."""
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    client = service.client()
    jid, output_dir = copied_job(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, TOKEN_SCRIPT, env=[f"CHRIS_USER_TOKEN={token}", "A=1"]))
    deadline = time.monotonic() + 180
    while (compute := client.get_job_status(JobType.PLUGIN, jid)["compute"])["status"] in ("notStarted", "started"):
        if process_list and compute["status"] == "started":
            processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
            assert token not in processes
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert compute["status"] == "finishedSuccessfully", compute
    assert (service.store_base / output_dir / "token.txt").read_text() == f"{token}\n"
    assert f"token: {MASK}" in compute["logs"] and token not in compute["logs"]
    run = settled_runs(service, f"plugin-{jid}")[0]
    deadline = time.monotonic() + 15
    while f"token: {MASK}" not in prefect_log_messages(service, run["id"]):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert f"CHRIS_USER_TOKEN={MASK}" in prefect_log_messages(service, run["id"])  # the plugin's `env`
    return jid, compute, since


def with_inputs(service: Service) -> Service:
    make_fslink_fixture(service.store_base)
    return service


def assert_nowhere(service: Service, jid: str, token: str, since: datetime, state_dir: Path) -> None:
    for what, text in prefect_answers(service, jid, since).items():
        assert token not in text, what
    assert files_holding(state_dir, token) == []
    assert (state_dir / "jobs.db").stat().st_mode & 0o077 == 0


@pytest.fixture(scope="module")
def fslink(fslink_service: Service) -> Service:
    return with_inputs(fslink_service)


def test_docker_job_env_reaches_only_the_plugin(fslink: Service, session_tmp: Path):
    token = new_token()
    jid, _, since = run_token_plugin(fslink, token)
    assert_nowhere(fslink, jid, token, since, session_tmp / "state-fslink")
    assert files_holding(session_tmp / "prefect-home", token) == []  # Prefect's own database
    delete_and_forget(fslink.client(), jid)


def test_chatty_plugin_lines_all_reach_prefect(fslink: Service):
    client = fslink.client()
    jid, output_dir = copied_job(fslink)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, CHATTY_SCRIPT))
    assert wait_status(client, JobType.PLUGIN, jid, timeout=300)["status"] == "finishedSuccessfully"
    deadline = time.monotonic() + 120  # the container ended; its run still forwards its output
    while (run := settled_runs(fslink, f"plugin-{jid}")[0])["state_type"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert run["state_type"] == "COMPLETED"
    deadline = time.monotonic() + 60  # Prefect receives the records in batches
    while True:
        records = prefect_logs(fslink, run["id"])
        lines = [line for record in records for line in record["message"].split("\n")]
        if "end" in lines:
            break
        assert time.monotonic() < deadline
        time.sleep(0.5)
    errors = [line for line in fslink.output if "rror" in line][-5:]
    assert [line for line in lines if line.startswith("line ")] == [f"line {i}" for i in range(1, CHATTY_LINES + 1)], errors
    pieces = [line for line in lines if line.startswith("x")]
    assert "".join(pieces) == "x" * 1048576 and max(map(len, pieces)) == MAX_LINE_BYTES
    assert "end" in lines
    assert len(records) < 100  # lines that come together are one record
    delete_and_forget(client, jid)


@pytest.fixture(scope="module")
def slurm(slurm_service: Service) -> Service:
    return with_inputs(slurm_service)


def test_slurm_job_env_reaches_only_the_plugin(slurm: Service, session_tmp: Path):
    token = new_token()
    jid, _, since = run_token_plugin(slurm, token, process_list=True)
    state_dir = session_tmp / "state-slurm"
    work_dir = state_dir / "slurm"
    assert (work_dir / f"{jid}.log").exists() and not (work_dir / f"{jid}.env").exists()
    assert f"token: {MASK}" in (work_dir / f"{jid}.log").read_text()
    assert work_dir.stat().st_mode & 0o077 == 0
    assert_nowhere(slurm, jid, token, since, state_dir)
    delete_and_forget(slurm.client(), jid)


def test_slurm_refuses_env_values_with_line_breaks(slurm: Service):
    jid, output_dir = copied_job(slurm)
    answer = raw(slurm, "POST", "pluginjobs/", data={
        **sh_plugin(output_dir, "true", env=["OK=1", "BROKEN=a\nb"]), "jid": jid})
    assert answer.status_code == 400
    assert answer.json() == {"message": "env: values must not contain line breaks with Slurm compute (BROKEN)"}
    assert prefect_runs(slurm, f"plugin-{jid}") == []


@pytest.fixture(scope="module")
def kubernetes(kubernetes_service: Service) -> Service:
    return with_inputs(kubernetes_service)


def test_kubernetes_job_env_is_only_in_its_secret(kubernetes: Service, session_tmp: Path):
    token = new_token()
    cluster = KubernetesCompute(store_base=str(kubernetes.store_base))
    jid, _, since = run_token_plugin(kubernetes, token)
    serialize = cluster.api_client.sanitize_for_serialization
    job = cluster.batch.read_namespaced_job(jid, "default")
    objects = [*cluster.batch.list_namespaced_job("default").items, *cluster.core.list_namespaced_pod("default").items]
    assert token not in json.dumps(serialize(objects))
    secret = cluster.core.read_namespaced_secret(f"{jid}-env", "default")
    assert token in {base64.b64decode(value).decode() for value in secret.data.values()}
    assert [(owner.kind, owner.uid) for owner in secret.metadata.owner_references] == [("Job", job.metadata.uid)]
    assert_nowhere(kubernetes, jid, token, since, session_tmp / "state-kubernetes")
    delete_and_forget(kubernetes.client(), jid)
    deadline = time.monotonic() + 30
    while cluster.core.list_namespaced_secret("default", field_selector=f"metadata.name={jid}-env").items:
        assert time.monotonic() < deadline
        time.sleep(0.5)
