"""prefect.yaml's deployments on real work pools: the process pool runs whole jobs and the
API's job steps (PFCON_DEPLOYMENT=process) through a real `prefect worker`; the docker and
kubernetes pools are created from workpools/ templates and every deployment applies."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pfconclient.client import JobType

from conftest import Service, _start_replica, _stop, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture, tree
from prefect_pfcon.job_secrets import KEY_ENV
from test_fslink_lifecycle import copy_inputs, new_jid, plugin_descriptors
from test_prefect_native import plugin_spec, prefect_cli, run_deployment, wait_run

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
PROCESS_DEPLOYMENTS = [f"pfcon-{flow}/process" for flow in ("copy", "plugin", "upload", "delete", "job", "reprocess")]


@pytest.fixture(scope="module")
def pools(fslink_service: Service) -> Service:
    service = fslink_service
    for pool, kind, template in (("pfcon-process", "process", None), ("pfcon-docker", "docker", "docker.json"),
                                 ("pfcon-kubernetes", "kubernetes", "kubernetes.json")):
        extra = ["--base-job-template", str(REPO / "workpools" / template)] if template else []
        prefect_cli(service, "work-pool", "create", pool, "--type", kind, "--overwrite", *extra)
    env = {**os.environ, "PREFECT_API_URL": service.prefect_api_url, "PFCON_REPO": str(REPO)}
    result = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return service


@pytest.fixture(scope="module")
def secrets_key() -> str:
    """The key the pool's API and its worker share for job env values."""
    return Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def worker(pools: Service, session_tmp: Path, secrets_key: str) -> Iterator[subprocess.Popen]:
    env = {**os.environ, "PREFECT_API_URL": pools.prefect_api_url, KEY_ENV: secrets_key}
    log = (session_tmp / "process-worker.log").open("w")
    process = subprocess.Popen([PREFECT, "worker", "start", "--pool", "pfcon-process", "--type", "process"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    yield process
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:  # Prefect's worker may wait on its runs' processes: ours to stop
        process.kill()
        process.wait(timeout=30)


def test_every_deployment_applies_to_its_pool(pools: Service):
    deployments = pools.prefect("post", "/deployments/filter", json={}).json()
    by_pool = {}
    for deployment in deployments:
        by_pool.setdefault(deployment["work_pool_name"], set()).add(deployment["name"])
    assert by_pool["pfcon-process"] == {"process"}
    assert by_pool["pfcon-docker"] == {"docker"} and by_pool["pfcon-kubernetes"] == {"kubernetes"}
    template = pools.prefect("get", "/work_pools/pfcon-kubernetes").json()
    pod = template["base_job_template"]["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "{{ storebase_claim }}"


def test_whole_job_on_the_process_pool(pools: Service, worker):
    service = pools
    make_fslink_fixture(service.store_base)
    jid, output_dir = f"pool-{uuid.uuid4().hex[:8]}", f"home/alice/feeds/pool-{uuid.uuid4().hex[:6]}"
    run_id = run_deployment(service, "pfcon-job/process", {
        "job": {"plugin": plugin_spec(), "input_dirs": ["home/alice/feed/in"], "output_dir": output_dir, "jid": jid},
        "storage_block": "fslink-storage", "compute_block": "fslink-compute"})
    run = wait_run(service, run_id, timeout=300)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["work_pool_name"] == "pfcon-process"
    assert tree(service.store_base / output_dir) == FSLINK_STAGED


def test_api_steps_run_on_the_pool(pools: Service, worker, session_tmp: Path, secrets_key: str):
    """An API replica with PFCON_DEPLOYMENT=process: CUBE's job steps become runs of the
    process pool's deployments, and the worker runs them (opening the env the API sealed)."""
    replica = _start_replica(session_tmp, pools, "fslink", {"PFCON_DEPLOYMENT": "process", KEY_ENV: secrets_key},
                             name="pool-api")
    try:
        make_fslink_fixture(replica.store_base)
        client = replica.client()
        jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
        assert copy_inputs(replica, jid, output_dir)["status"] == "finishedSuccessfully"
        client.submit_job(JobType.PLUGIN, jid, plugin_descriptors(output_dir))
        assert wait_status(client, JobType.PLUGIN, jid, timeout=300)["status"] == "finishedSuccessfully"
        runs = pools.prefect("post", "/flow_runs/filter", json={
            "flow_runs": {"name": {"any_": [f"copy-{jid}", f"plugin-{jid}"]}}}).json()
        assert {run["work_pool_name"] for run in runs} == {"pfcon-process"}
    finally:
        _stop(replica)
