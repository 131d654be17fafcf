"""The docker work pool for real, as deploy/compose.yaml's pool profile runs it: the API
(PFCON_DEPLOYMENT=docker) runs no flows; a Prefect docker worker runs each job's flow run in a
container of the prefect-pfcon image, with the storeBase volume, the engine socket and the job
secrets key mounted. A CUBE lifecycle, a whole job from the UI and a reprocessing run pass
through it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pfconclient.client import JobType

from compose_deployment import IMAGE, ComposeProject, fslink_deployment, own_tree
from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, tree
from test_fslink_lifecycle import copied_job, delete_and_forget, job_runs, settled_runs, sh_plugin
from test_prefect_native import plugin_spec, run_deployment, wait_run

BLOCKS = {"storage_block": "pfcon-storage", "compute_block": "pfcon-compute"}  # saved by the compose API


@pytest.fixture(scope="module")
def deployment(session_tmp: Path) -> Iterator[tuple[Service, ComposeProject]]:
    with fslink_deployment(session_tmp, ("pool",), PFCON_DEPLOYMENT="docker") as deployed:
        yield deployed


@pytest.fixture(scope="module")
def service(deployment) -> Service:
    return deployment[0]


def flow_containers(docker_client, run_id: str) -> list:
    """The containers the docker worker ran a flow run in: of the image, with the run's label
    (which its plugin containers carry too); kept after they exit."""
    labelled = docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"io.prefect.flow-run-id={run_id}"})
    return [container for container in labelled if container.attrs["Config"]["Image"] == IMAGE]


def test_api_jobs_run_in_flow_containers(service: Service, docker_client):
    client = service.client()
    jid, output_dir = copied_job(service)
    script = 'echo "token is $TOKEN"; echo "$TOKEN" > "$2"/token.txt; cp -r "$1"/. "$2"/'
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, script, env=["TOKEN=docker-pool-secret"]))
    plugin = wait_status(client, JobType.PLUGIN, jid, timeout=180)
    assert plugin["status"] == "finishedSuccessfully", plugin
    assert "docker-pool-secret" not in plugin["logs"]  # masked; the plugin still got it:
    assert (service.store_base / output_dir / "token.txt").read_text() == "docker-pool-secret\n"
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == sorted(
        FSLINK_STAGED + ["token.txt"])
    delete_and_forget(client, jid)
    run = wait_run(service, job_runs(service, jid)[0]["id"], timeout=60)
    assert run["state_type"] == "COMPLETED" and run["work_pool_name"] == "pfcon-docker", run["state"]
    assert {task["flow_run_id"] for task in settled_runs(service, f"plugin-{jid}")} == {run["id"]}
    (container,) = flow_containers(docker_client, run["id"])
    assert "docker-pool-secret" not in str(container.attrs["Config"]["Env"])  # the key came from a volume


def test_whole_job_and_reprocessing_on_the_pool(service: Service, docker_client):
    jid, output_dir = f"dpool-{uuid.uuid4().hex[:8]}", f"home/alice/feeds/dpool-{uuid.uuid4().hex[:6]}"
    whole = run_deployment(service, "pfcon-job/docker", {
        "job": {"plugin": plugin_spec(), "input_dirs": ["home/alice/feed/in"], "output_dir": output_dir, "jid": jid},
        **BLOCKS})
    tag = uuid.uuid4().hex[:6]
    uploads = service.store_base / f"home/re-{tag}/uploads"
    for name in ("s1", "s2"):
        (uploads / name).mkdir(parents=True)
        (uploads / name / f"{name}.txt").write_text(name)
    own_tree(service.store_base / f"home/re-{tag}")
    batch = run_deployment(service, "pfcon-reprocess/docker", {
        "plugin": plugin_spec(), "inputs": {"glob": f"home/re-{tag}/uploads/s[0-9]", "dirs": []},
        "output_template": "{input_dir}-{plugin}", **BLOCKS})
    for run_id in (whole, batch):
        run = wait_run(service, run_id, timeout=300)
        assert run["state_type"] == "COMPLETED" and run["work_pool_name"] == "pfcon-docker", run["state"]
        assert len(flow_containers(docker_client, run_id)) == 1
    assert tree(service.store_base / output_dir) == FSLINK_STAGED
    for name in ("s1", "s2"):
        assert (uploads.parent / "uploads" / f"{name}-busybox" / f"{name}.txt").read_text() == name
