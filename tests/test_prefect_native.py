"""What operators do in Prefect, for real: run a whole job and a batch reprocessing from their
deployments (with `prefect deployment run`, as the UI's "Run" does), read artifacts, register
blocks, and run pfcon's lifecycle on a PostgreSQL-backed Prefect server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from pfconclient.client import JobType

from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture, tree
from test_fslink_lifecycle import BUSYBOX, copy_inputs, new_jid, plugin_descriptors

PREFECT = str(Path(sys.executable).with_name("prefect"))
COPY_SCRIPT = 'echo "processing $1"; cp -r "$1"/. "$2"/; echo done'


def prefect_cli(service: Service, *args: str) -> str:
    env = {**os.environ, "PREFECT_API_URL": service.prefect_api_url, "PREFECT_API_AUTH_STRING": service.prefect_auth}
    result = subprocess.run([PREFECT, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_deployment(service: Service, name: str, parameters: dict) -> str:
    """``prefect deployment run`` as an operator types it; the flow run's id."""
    output = prefect_cli(service, "deployment", "run", name, "--params", json.dumps(parameters))
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)


def wait_run(service: Service, run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = service.prefect("get", f"/flow_runs/{run_id}").json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(0.5)
    raise TimeoutError(f"flow run {run_id} still {run['state_type']}")


def artifact(service: Service, key: str) -> dict:
    found = service.prefect("post", "/artifacts/filter", json={
        "artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}).json()
    assert found, f"no artifact {key}"
    return found[0]


def task_runs_tagged(service: Service, tag: str) -> list[dict]:
    return service.prefect("post", "/task_runs/filter", json={
        "task_runs": {"tags": {"all_": [tag]}}, "sort": "EXPECTED_START_TIME_ASC"}).json()


def task_runs_of(service: Service, flow_run_id: str) -> list[dict]:
    """The task runs of a flow run (its own, not its subflows')."""
    return service.prefect("post", "/task_runs/filter", json={
        "flow_runs": {"id": {"any_": [flow_run_id]}}}).json()


@pytest.fixture(scope="module")
def service(fslink_service: Service) -> Service:
    make_fslink_fixture(fslink_service.store_base)
    return fslink_service


def plugin_spec(script: str = COPY_SCRIPT) -> dict:
    return {"image": BUSYBOX, "entrypoint": ["sh", "-c", script, "sh"], "type": "ds", "memory_limit": 200}


def test_whole_job_from_its_deployment(service: Service):
    jid, output_dir = f"ui-{uuid.uuid4().hex[:8]}", f"home/alice/feeds/ui-{uuid.uuid4().hex[:6]}"
    run_id = run_deployment(service, "pfcon-job/pfcon", {
        "job": {"plugin": plugin_spec(), "input_dirs": ["home/alice/feed/in"], "output_dir": output_dir, "jid": jid},
        "storage_block": "fslink-storage", "compute_block": "fslink-compute"})
    run = wait_run(service, run_id)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["name"] == f"job-{jid}"
    assert tree(service.store_base / output_dir) == FSLINK_STAGED  # where CUBE would expect them
    assert not (service.store_base / f"key-{jid}").exists()  # cleaned up
    steps = {step["name"]: step for step in task_runs_of(service, run_id)}  # the same tasks as the API's steps
    assert set(steps) == {"copy-" + jid, "plugin-" + jid, "delete-" + jid}
    assert all(step["state_type"] == "COMPLETED" for step in steps.values())
    for name, step in steps.items():
        assert {f"jid:{jid}", "step:" + name.split("-", 1)[0], "pfcon"} <= set(step["tags"])
    assert {f"image:{BUSYBOX}", "compute:docker"} <= set(steps["plugin-" + jid]["tags"])
    outputs = artifact(service, f"pfcon-outputs-{jid}")
    assert outputs["type"] == "table" and outputs["task_run_id"] == steps["plugin-" + jid]["id"]
    assert outputs["flow_run_id"] == run_id
    assert sorted(row["file"] for row in json.loads(outputs["data"])) == FSLINK_STAGED


def test_job_form_is_typed_and_described(service: Service):
    deployment = service.prefect("get", "/deployments/name/pfcon-job/pfcon").json()
    schema = deployment["parameter_openapi_schema"]
    assert schema["required"] == ["job"]
    plugin = schema["definitions"]["PluginSpec"]["properties"]
    assert plugin["type"]["enum"] == ["fs", "ds", "ts"] and plugin["cpu_limit"]["default"] == 1000
    assert all(field.get("description") for field in plugin.values())
    assert schema["properties"]["storage_block"]["description"].startswith("Name of the storage block")


def test_reprocessing_over_a_glob_with_a_concurrency_limit(service: Service):
    tag = uuid.uuid4().hex[:6]
    base = service.store_base / f"home/re-{tag}/uploads"
    for name in ("s1", "s2", "s3", "s4"):
        (base / name).mkdir(parents=True)
        (base / name / f"{name}.txt").write_text(name)
    done_before = base / "s4-busybox"
    done_before.mkdir()
    (done_before / "old.txt").write_text("already processed")
    # fails on its first attempt for each input, succeeds on the retry
    flaky = 'if [ ! -e "$2/.tried" ]; then touch "$2/.tried"; exit 1; fi; cp -r "$1"/. "$2"/'
    run_id = run_deployment(service, "pfcon-reprocess/pfcon", {
        "plugin": plugin_spec(flaky), "inputs": {"glob": f"home/re-{tag}/uploads/s[0-9]", "dirs": []},
        "output_template": "{input_dir}-{plugin}", "concurrency_limit": 1, "retries": 1,
        "storage_block": "fslink-storage", "compute_block": "fslink-compute"})
    run = wait_run(service, run_id, timeout=400)
    assert run["state_type"] == "COMPLETED", run["state"]
    for name in ("s1", "s2", "s3"):
        assert (base / f"{name}-busybox" / f"{name}.txt").read_text() == name
    assert sorted(p.name for p in done_before.iterdir()) == ["old.txt"]  # skipped, not redone

    summary = json.loads(artifact(service, "pfcon-reprocess-summary")["data"])
    statuses = {Path(row["input"]).name: row["status"] for row in summary}
    assert statuses == {"s1": "done", "s2": "done", "s3": "done", "s4": "skipped (done)"}
    limit = service.prefect("get", "/v2/concurrency_limits/pfcon-reprocess").json()
    assert limit["limit"] == 1
    plugin_runs = [r for r in task_runs_tagged(service, f"image:{BUSYBOX}")
                   if r["name"].startswith(f"plugin-re-{run_id[:8]}") and r["state_type"] == "COMPLETED"]
    assert len(plugin_runs) == 3
    intervals = sorted((datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"]))
                       for r in plugin_runs)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(intervals, intervals[1:]))  # one at a time


def test_blocks_register_with_the_prefect_cli(service: Service):
    output = prefect_cli(service, "block", "register", "-m", "prefect_pfcon.blocks")
    assert "Successfully registered 9 blocks" in " ".join(output.split())
    for slug in ("pfcon-fslink-storage", "pfcon-filesystem-storage", "pfcon-swift-storage",
                 "pfcon-s3-storage", "pfcon-zipfile-storage", "pfcon-docker-compute", "pfcon-slurm-compute",
                 "pfcon-kubernetes-compute", "pfcon-swarm-compute"):
        block_type = service.prefect("get", f"/block_types/slug/{slug}")
        assert block_type.status_code == 200 and block_type.json()["description"]
    for slug, secrets in (("pfcon-swift-storage", ["key"]), ("pfcon-s3-storage", ["access_key", "secret_key"])):
        block_type = service.prefect("get", f"/block_types/slug/{slug}").json()
        schemas = service.prefect("post", "/block_schemas/filter", json={
            "block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}}).json()
        for field in secrets:  # secret fields in the UI
            assert schemas[0]["fields"]["properties"][field]["format"] == "password"


def test_lifecycle_on_postgresql(postgres_service: Service):
    service = postgres_service
    make_fslink_fixture(service.store_base)
    client = service.client()
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
    client.submit_job(JobType.PLUGIN, jid, plugin_descriptors(output_dir))
    assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == sorted(
        [*FSLINK_STAGED, "new.txt"])
    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    # the job's flow run and its steps' task runs live in PostgreSQL
    def names(table: str) -> list[str]:
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", os.environ["PFCON_TEST_POSTGRES_URL"].rsplit(":", 1)[1].split("/")[0],
             "-U", "postgres", "-d", service.database, "-At", "-c",
             f"SELECT name FROM {table} WHERE name LIKE '%-{jid}' ORDER BY name"],
            capture_output=True, text=True, check=True).stdout.split()

    assert names("flow_run") == [f"job-{jid}"]
    deadline = time.monotonic() + 30  # task-run rows are written from the engine's events
    while names("task_run") != [f"copy-{jid}", f"delete-{jid}", f"plugin-{jid}"]:
        assert time.monotonic() < deadline, names("task_run")
        time.sleep(0.5)
