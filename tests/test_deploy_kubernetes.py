"""prefect-pfcon deployed on the test cluster from deploy/kubernetes (the loopback overlay in a
fresh namespace, the prefect-pfcon image): CUBE's fslink lifecycle through the pfcon API pod
from outside, its plugin a Kubernetes Job; then the pfcon-kubernetes work pool for real: a
`prefect worker` of type kubernetes runs job flows as pods of the image, which create the
plugin Jobs, for CUBE's steps through an API replica (PFCON_DEPLOYMENT=kubernetes), a whole
job from its deployment and a reprocessing run."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pfconclient.client import JobType

from conftest import wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture, tree
from kubernetes_deploy import PFCON_UID, ClusterService, cluster_deployment, kubectl
from kubernetes_pool import POOL, kubernetes_worker, pool_api_replica, set_pool_defaults
from pool_workers import deploy_to_pools, wait_for_status
from test_fslink_lifecycle import BUSYBOX, delete_and_forget, job_runs, settled_runs, sh_plugin
from test_prefect_native import plugin_spec, run_deployment, wait_run

SECRET_SCRIPT = 'echo "SECRET is $SECRET"; echo "$SECRET" > "$2"/env.txt; cp -r "$1"/. "$2"/; echo done'


def chown_tree(root: Path, uid: int) -> None:
    """Give ``root`` and everything under it to ``uid`` (ChRIS's files belong to its user)."""
    for path in (root, *root.rglob("*")):
        os.lchown(path, uid, uid)


@pytest.fixture(scope="module")
def deployment(session_tmp: Path) -> Iterator[ClusterService]:
    with cluster_deployment(session_tmp) as service:
        make_fslink_fixture(service.store_base)
        chown_tree(service.store_base, PFCON_UID)
        yield service


def plugin_job(service: ClusterService, jid: str) -> dict:
    """The plugin's Kubernetes Job (named after the jid) in the deployment's namespace."""
    return json.loads(kubectl("-n", service.namespace, "get", "job", jid, "-o", "json"))


def new_job() -> tuple[str, str]:
    return f"k8s-{uuid.uuid4().hex[:10]}", f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"


def test_lifecycle_through_the_cluster_deployment(deployment: ClusterService):
    service = deployment
    client = service.client()
    info = client.get_server_info()
    assert (info["container_env"], info["compute_volume_type"], info["storage_env"]) == (
        "kubernetes", "kubernetes_pvc", "fslink")
    jid, output_dir = new_job()

    client.submit_job(JobType.COPY, jid, {"input_dirs": ["home/alice/feed/in"], "output_dir": output_dir})
    copy = wait_status(client, JobType.COPY, jid, timeout=120)
    assert copy["status"] == "finishedSuccessfully" and "Staged 4 files" in copy["logs"], copy

    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, SECRET_SCRIPT, env=["SECRET=k8s-secret-value"]))
    plugin = wait_status(client, JobType.PLUGIN, jid, timeout=180)
    assert (plugin["status"], plugin["message"]) == ("finishedSuccessfully", "finished"), plugin
    assert plugin["logs"] == "SECRET is ***\ndone\n"
    out = service.store_base / output_dir
    assert tree(out) == sorted([*FSLINK_STAGED, "env.txt"])
    assert (out / "env.txt").read_text() == "k8s-secret-value\n"
    assert out.stat().st_uid == PFCON_UID  # written by pfcon's user, as CONTAINER_USER says

    # the plugin ran as a Job of the namespace, made by the API pod's embedded runner
    job = plugin_job(service, jid)
    labels = job["metadata"]["labels"]
    (run,) = job_runs(service, jid)
    assert labels["io.prefect.flow-run-id"] == run["id"] and labels["chrisproject.org/job-type"] == "plugin"
    assert labels["io.prefect.task-run-id"] == settled_runs(service, f"plugin-{jid}")[0]["id"]
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "storebase"
    assert pod["containers"][0]["securityContext"]["runAsUser"] == PFCON_UID
    assert run["deployment_id"] is None and run["work_pool_name"] is None  # run in the API pod

    listing = client.get_plugin_job_json_data(jid, output_dir)
    assert sorted(listing["rel_file_paths"]) == sorted([*FSLINK_STAGED, "env.txt"])
    upload = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    assert upload["compute"]["message"] == "uploadSkipped"
    delete_and_forget(client, jid)
    assert not (service.store_base / f"key-{jid}").exists()
    assert kubectl("-n", service.namespace, "get", "job", jid, "--ignore-not-found") == ""
    assert (out / "env.txt").exists()


# ----- the kubernetes work pool ---------------------------------------------------------


@pytest.fixture(scope="module")
def pool(deployment: ClusterService) -> ClusterService:
    deploy_to_pools(deployment)
    set_pool_defaults(deployment)
    return deployment


@pytest.fixture(scope="module")
def worker(pool: ClusterService, session_tmp: Path) -> Iterator[subprocess.Popen]:
    with kubernetes_worker(pool, session_tmp / "kubernetes-worker.log") as process:
        yield process


def flow_pod_jobs(service: ClusterService, run_id: str) -> list[dict]:
    """The Kubernetes Jobs the worker made for a flow run."""
    found = kubectl("-n", service.namespace, "get", "jobs", "-l", f"prefect.io/flow-run-id={run_id}", "-o", "json")
    return json.loads(found)["items"]


def assert_run_in_a_flow_pod(service: ClusterService, run: dict) -> None:
    """The flow run ran on the pool, in a pod of the image that got the job secrets key from
    the namespace's Secret (not from its parameters or plain env)."""
    assert run["work_pool_name"] == POOL
    (job,) = flow_pod_jobs(service, run["id"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "pfcon-job-secrets"}} in container["envFrom"]
    assert "PFCON_JOB_SECRETS_KEY" not in {entry["name"] for entry in container.get("env", [])}
    assert service.job_secrets_key not in json.dumps(job) + json.dumps(run["parameters"])


def test_api_jobs_run_on_the_kubernetes_pool(pool: ClusterService, worker):
    """CUBE's steps posted to an API replica with PFCON_DEPLOYMENT=kubernetes are task runs of
    one flow run of pfcon-job/kubernetes, in a flow pod that creates the plugin Job and opens
    the env the API sealed."""
    with pool_api_replica(pool, {"PFCON_DEPLOYMENT": "kubernetes", "PFCON_JOB_IDLE_SECONDS": "120"}) as replica:
        client = replica.client()
        jid, output_dir = new_job()
        client.submit_job(JobType.COPY, jid, {"input_dirs": ["home/alice/feed/in"], "output_dir": output_dir})
        copy = wait_status(client, JobType.COPY, jid, timeout=180)  # a worker starts a flow pod first
        assert copy["status"] == "finishedSuccessfully" and "Staged 4 files" in copy["logs"], copy

        client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, SECRET_SCRIPT, env=["SECRET=pool-k8s-secret"]))
        seen = wait_for_status(client, jid, "finishedSuccessfully", timeout=180)
        assert "finishedWithError" not in seen, seen
        plugin = client.get_job_status(JobType.PLUGIN, jid)["compute"]
        assert plugin["logs"] == "SECRET is ***\ndone\n", plugin
        assert (pool.store_base / output_dir / "env.txt").read_text() == "pool-k8s-secret\n"

        (run,) = job_runs(pool, jid)
        deployment = pool.prefect("get", f"/deployments/{run['deployment_id']}").json()
        assert deployment["name"] == "kubernetes" and run["parameters"]["jid"] == jid
        assert_run_in_a_flow_pod(pool, run)
        assert plugin_job(pool, jid)["metadata"]["labels"]["io.prefect.flow-run-id"] == run["id"]

        delete_and_forget(client, jid)
        deadline = time.monotonic() + 60  # the run ends just after its delete step
        while (run := job_runs(pool, jid)[0])["state_type"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert run["state_type"] == "COMPLETED", run["state"]
        steps = [settled_runs(pool, f"{step}-{jid}")[0] for step in ("copy", "plugin", "delete")]
        assert {task["flow_run_id"] for task in steps} == {run["id"]}
        assert not (pool.store_base / f"key-{jid}").exists()


def test_whole_job_on_the_kubernetes_pool(pool: ClusterService, worker):
    jid, output_dir = new_job()
    run_id = run_deployment(pool, "pfcon-job/kubernetes", {
        "job": {"plugin": plugin_spec(), "input_dirs": ["home/alice/feed/in"], "output_dir": output_dir, "jid": jid}})
    run = wait_run(pool, run_id, timeout=240)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert_run_in_a_flow_pod(pool, run)
    assert tree(pool.store_base / output_dir) == FSLINK_STAGED


def test_reprocessing_on_the_kubernetes_pool(pool: ClusterService, worker):
    tag = uuid.uuid4().hex[:6]
    base = pool.store_base / f"home/re-{tag}/uploads"
    for name in ("s1", "s2"):
        (base / name).mkdir(parents=True)
        (base / name / f"{name}.txt").write_text(name)
    chown_tree(pool.store_base / f"home/re-{tag}", PFCON_UID)
    run_id = run_deployment(pool, "pfcon-reprocess/kubernetes", {
        "plugin": plugin_spec(), "inputs": {"glob": f"home/re-{tag}/uploads/s[0-9]", "dirs": []},
        "output_template": "{input_dir}-{plugin}"})
    run = wait_run(pool, run_id, timeout=240)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert_run_in_a_flow_pod(pool, run)
    for name in ("s1", "s2"):
        assert (base / f"{name}-busybox" / f"{name}.txt").read_text() == name
    plugins = [task for task in pool.prefect("post", "/task_runs/filter", json={
        "task_runs": {"tags": {"all_": [f"image:{BUSYBOX}"]}}}).json() if task["name"].startswith(f"plugin-re-{run_id[:8]}")]
    assert len(plugins) == 2 and all(task["state_type"] == "COMPLETED" for task in plugins)
