"""``GET /api/v1/ops/jobs/`` and ``prefect-pfcon jobs`` after real lifecycles (completed, failed
and retried, failed, DELETEd), and Prefect's vacuum keeping jobs ``PFCON_HISTORY_DAYS``."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pfconclient.client import JobType

from conftest import Service, _stop, raw, wait_status
from fixtures_tree import make_fslink_fixture
from test_faults import own_service
from test_fslink_lifecycle import BUSYBOX, copied_job, delete_and_forget, sh_plugin, submit_and_wait_started

OPS_JOBS = "ops/jobs/"
WRITE_OUTPUT = 'echo out > "$2"/out.txt'


def run_plugin(service: Service, jid: str, output_dir: str, script: str, auid: str, **overrides) -> dict:
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script, auid=auid, **overrides))
    return wait_status(client, JobType.PLUGIN, jid)


def listing(service: Service, **params) -> dict:
    response = raw(service, "GET", OPS_JOBS, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def settled(service: Service, expected: int, **params) -> dict:
    """The listing once ``expected`` jobs match and none has a step still running (task-run rows
    reach Prefect's API up to a second after the step)."""
    deadline = time.monotonic() + 30
    while True:
        page = listing(service, **params)
        if len(page["jobs"]) == expected and all(job["state"] != "running" for job in page["jobs"]):
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.3)


def job_state_becomes(service: Service, jid: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while (answer := raw(service, "GET", f"{OPS_JOBS}{jid}/")).status_code != 200 or answer.json()["state"] != state:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.3)


@pytest.fixture(scope="module")
def lifecycles(fslink_service: Service) -> dict[str, str]:
    """Four jobs of one new user: completed, retried after a failure, failed, DELETEd."""
    service, auid = fslink_service, f"ops-{uuid.uuid4().hex[:8]}"
    make_fslink_fixture(service.store_base)
    client = service.client()
    jids: dict[str, str] = {"auid": auid}
    jid, out = copied_job(service)
    assert run_plugin(service, jid, out, WRITE_OUTPUT, auid, cpu_limit=500, memory_limit=250)["status"] == (
        "finishedSuccessfully")
    delete_and_forget(client, jid)
    jids["completed"] = jid
    jid, out = copied_job(service)
    assert run_plugin(service, jid, out, "exit 4", auid)["status"] == "finishedWithError"
    assert run_plugin(service, jid, out, WRITE_OUTPUT, auid)["status"] == "finishedSuccessfully"
    jids["retried"] = jid
    jid, out = copied_job(service)
    assert run_plugin(service, jid, out, "echo bad; exit 3", auid)["status"] == "finishedWithError"
    jids["failed"] = jid
    jid, out = copied_job(service)
    submit_and_wait_started(client, jid, sh_plugin(out, "sleep 60", auid=auid))
    client.delete_job(JobType.PLUGIN, jid)
    client.delete_job(JobType.COPY, jid)
    job_state_becomes(service, jid, "cancelled")  # the flow run ends once the plugin stopped
    jids["deleted"] = jid
    return jids


def test_listing_accounts_for_every_job_newest_first(fslink_service: Service, lifecycles: dict[str, str]):
    page = settled(fslink_service, 4, auid=lifecycles["auid"])
    jobs = {job["jid"]: job for job in page["jobs"]}
    assert [job["jid"] for job in page["jobs"]] == [lifecycles[name] for name in
                                                   ("deleted", "failed", "retried", "completed")]
    assert page["history_days"] == 30 and page["oldest"] is not None and page["next_offset"] is None

    completed = jobs[lifecycles["completed"]]
    assert completed["state"] == "completed" and completed["flow_run_state"] == "Completed"
    assert (completed["auid"], completed["image"], completed["compute"]) == (lifecycles["auid"], BUSYBOX, "docker")
    assert (completed["cpu_limit"], completed["memory_limit"], completed["gpu_limit"]) == (500, 250, 0)
    assert completed["exit_code"] == 0 and completed["duration_seconds"] > 0
    assert {step: attempt["state"] for step, attempt in completed["steps"].items()} == {
        "copy": "Completed", "plugin": "Completed", "delete": "Completed"}
    plugin = completed["steps"]["plugin"]
    assert datetime.fromisoformat(plugin["start"]) <= datetime.fromisoformat(plugin["end"])
    assert plugin["duration_seconds"] == pytest.approx(
        (datetime.fromisoformat(plugin["end"]) - datetime.fromisoformat(plugin["start"])).total_seconds())

    retried = jobs[lifecycles["retried"]]
    assert retried["state"] == "waiting" and retried["exit_code"] == 0 and retried["end"] is None
    failed = jobs[lifecycles["failed"]]
    assert failed["state"] == "failed" and failed["exit_code"] == 3
    assert failed["message"].endswith("PluginFailed: Plugin exited with code 3")
    assert failed["steps"]["plugin"]["state"] == "Failed"
    deleted = jobs[lifecycles["deleted"]]
    assert deleted["state"] == "cancelled" and deleted["flow_run_state"] == "Cancelled"
    assert deleted["steps"]["plugin"]["state"] == "Cancelled" and deleted["exit_code"] is None


def test_filters_and_paging(fslink_service: Service, lifecycles: dict[str, str]):
    auid = lifecycles["auid"]
    settled(fslink_service, 4, auid=auid)
    assert [job["jid"] for job in listing(fslink_service, auid=auid, state="failed")["jobs"]] == [lifecycles["failed"]]
    assert [job["jid"] for job in listing(fslink_service, auid=auid, state="cancelled")["jobs"]] == [
        lifecycles["deleted"]]
    first = listing(fslink_service, auid=auid, limit=2)
    second = listing(fslink_service, auid=auid, limit=2, offset=first["next_offset"])
    assert [job["jid"] for job in first["jobs"] + second["jobs"]] == [
        lifecycles[name] for name in ("deleted", "failed", "retried", "completed")]
    assert second["next_offset"] is None
    assert len(listing(fslink_service, auid=auid, image=BUSYBOX, compute="docker")["jobs"]) == 4
    assert listing(fslink_service, auid=auid, image="local/other:test")["jobs"] == []
    assert listing(fslink_service, auid=auid, compute="kubernetes")["jobs"] == []
    later = datetime.now().astimezone() + timedelta(minutes=1)
    assert listing(fslink_service, auid=auid, since=later.isoformat())["jobs"] == []
    assert len(listing(fslink_service, auid=auid, until=later.isoformat())["jobs"]) == 4
    for bad in ({"state": "sleeping"}, {"limit": 0}, {"limit": 201}, {"offset": -1}, {"since": "yesterday"}):
        assert raw(fslink_service, "GET", OPS_JOBS, params=bad).status_code == 422, bad
    assert raw(fslink_service, "GET", OPS_JOBS, headers={}).status_code == 401
    assert raw(fslink_service, "GET", OPS_JOBS + "nope/", headers={}).status_code == 401


def test_text_listing_is_tab_separated(fslink_service: Service, lifecycles: dict[str, str]):
    settled(fslink_service, 4, auid=lifecycles["auid"])
    response = raw(fslink_service, "GET", OPS_JOBS, params={"auid": lifecycles["auid"]},
                   headers={**fslink_service.headers(), "Accept": "text/plain"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    rows = list(csv.DictReader(io.StringIO(response.text), delimiter="\t"))
    assert [row["jid"] for row in rows] == [lifecycles[name] for name in ("deleted", "failed", "retried", "completed")]
    failed = rows[1]
    assert (failed["state"], failed["exit_code"], failed["plugin"], failed["copy"], failed["upload"]) == (
        "failed", "3", "Failed", "Completed", "")
    assert failed["message"].endswith("Plugin exited with code 3") and failed["image"] == BUSYBOX


def test_one_job_shows_every_attempt(fslink_service: Service, lifecycles: dict[str, str]):
    settled(fslink_service, 4, auid=lifecycles["auid"])
    response = raw(fslink_service, "GET", OPS_JOBS + lifecycles["retried"] + "/")
    assert response.status_code == 200, response.text
    job = response.json()
    assert [(attempt["step"], attempt["state"]) for attempt in job["attempts"]] == [
        ("copy", "Completed"), ("plugin", "Failed"), ("plugin", "Completed")]
    assert job["attempts"][1]["message"].endswith("Plugin exited with code 4")
    assert len({attempt["task_run_id"] for attempt in job["attempts"]}) == 3
    assert {attempt["flow_run_id"] for attempt in job["attempts"]} == {job["flow_run_id"]}
    text = raw(fslink_service, "GET", OPS_JOBS + lifecycles["retried"] + "/",
               headers={**fslink_service.headers(), "Accept": "text/plain"}).text
    job_part, attempts_part = text.split("\n\n")
    assert [row["state"] for row in csv.DictReader(io.StringIO(attempts_part), delimiter="\t")] == [
        "Completed", "Failed", "Completed"]
    assert next(csv.DictReader(io.StringIO(job_part), delimiter="\t"))["jid"] == lifecycles["retried"]
    for unknown in ("never-posted", "bad%20jid"):
        missing = raw(fslink_service, "GET", OPS_JOBS + unknown + "/")
        assert missing.status_code == 404 and "message" in missing.json()


def cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PFCON_URL": service.url.removesuffix("/api/v1/"), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "prefect_pfcon.cli", "jobs", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_the_listing_and_a_job(fslink_service: Service, lifecycles: dict[str, str]):
    settled(fslink_service, 4, auid=lifecycles["auid"])
    as_json = cli(fslink_service, "--auid", lifecycles["auid"], "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert [job["jid"] for job in json.loads(as_json.stdout)["jobs"]][1] == lifecycles["failed"]
    table = cli(fslink_service, "--auid", lifecycles["auid"], "--state", "failed")
    assert table.returncode == 0, table.stderr
    assert lifecycles["failed"] in table.stdout and "Plugin exited with code 3" in table.stdout
    assert lifecycles["completed"] not in table.stdout and "kept 30 days" in table.stdout
    one = cli(fslink_service, lifecycles["retried"])
    assert one.returncode == 0 and "Plugin exited with code 4" in one.stdout
    missing = cli(fslink_service, "never-posted")
    assert missing.returncode == 1 and "404" in missing.stderr


def _aged(database: Path, run_name: str, by: timedelta) -> None:
    """Move a flow run's times back by ``by``, as if it had ended that long ago (the one
    stand-in here: a test cannot wait days for a job to age)."""
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT start_time, end_time, expected_start_time FROM flow_run WHERE name = ?",
                         (run_name,)).fetchone()
        assert row is not None and row[1] is not None, row
        moved = [(datetime.fromisoformat(value) - by).isoformat(sep=" ") for value in row]
        db.execute("UPDATE flow_run SET start_time = ?, end_time = ?, expected_start_time = ? WHERE name = ?",
                   (*moved, run_name))


def test_prefect_vacuum_keeps_jobs_history_days(session_tmp: Path):
    """With PFCON_HISTORY_DAYS=0.05 (72 minutes), a finished job that ended two hours ago is
    deleted by Prefect's vacuum service; one that just ended stays."""
    name = f"history-{uuid.uuid4().hex[:6]}"
    service, restart = own_service(session_tmp, name, PFCON_HISTORY_DAYS="0.05",
                                   PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS="1")
    finished = []
    try:
        for _ in range(2):
            jid, out = copied_job(service)
            assert run_plugin(service, jid, out, WRITE_OUTPUT, "history")["status"] == "finishedSuccessfully"
            delete_and_forget(service.client(), jid)
            finished.append(jid)
        settled(service, 2, auid="history")
    finally:
        _stop(service)
    old, kept = finished
    _aged(session_tmp / f"prefect-home-{name}" / "prefect.db", f"job-{old}", timedelta(hours=2))
    service = restart()
    try:
        page = settled(service, 1, auid="history")
        assert [job["jid"] for job in page["jobs"]] == [kept] and page["history_days"] == 0.05
        assert raw(service, "GET", OPS_JOBS + old + "/").status_code == 404
        assert datetime.fromisoformat(page["oldest"]) > datetime.now().astimezone() - timedelta(hours=1)
    finally:
        _stop(service)
