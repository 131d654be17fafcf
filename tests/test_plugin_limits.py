"""Plugins that cannot run or wait for ever: ``PFCON_MAX_JOB_SECONDS`` stops a plugin that
runs too long, ``PFCON_START_TIMEOUT_SECONDS`` removes one that cannot start. Real lifecycles
through python-pfconclient on Docker, Slurm and Kubernetes, the compute block's fields changed
as an operator would in the Prefect UI. (The Slurm time limit itself, ``sbatch --time``, is
tested on the block in test_slurm_compute: Slurm counts whole minutes.)"""

from __future__ import annotations

import subprocess

import docker
import pytest
from pfconclient.client import JobType

from conftest import Service, block_fields
from fixtures_tree import make_fslink_fixture
from prefect_pfcon.blocks.compute import KubernetesCompute
from test_fslink_lifecycle import finished_plugin, settled_runs

MISSING_IMAGE = "local/no-such-plugin:1.0"


@pytest.fixture(scope="module", autouse=True)
def inputs(fslink_service: Service) -> None:
    make_fslink_fixture(fslink_service.store_base)


@pytest.fixture(scope="module")
def slurm(slurm_service: Service) -> Service:
    make_fslink_fixture(slurm_service.store_base)
    return slurm_service


@pytest.fixture(scope="module")
def kubernetes(kubernetes_service: Service) -> Service:
    make_fslink_fixture(kubernetes_service.store_base)
    return kubernetes_service


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_plugin_is_stopped_at_its_time_limit(engine: str, request: pytest.FixtureRequest):
    service: Service = request.getfixturevalue("fslink_service" if engine == "docker" else "podman_service")
    client = docker.DockerClient(base_url=request.getfixturevalue("podman_host")) if engine == "podman" else (
        request.getfixturevalue("docker_client"))
    make_fslink_fixture(service.store_base)
    with block_fields(service, f"{'fslink' if engine == 'docker' else 'podman'}-compute", max_job_seconds=3):
        jid, _, result = finished_plugin(service, "echo start; sleep 300")
    assert (result["status"], result["message"]) == ("finishedWithError", "Plugin stopped: it hit its time limit of 3 s")
    assert result["logs"] == "start\n"
    container = client.containers.get(jid)  # killed, and kept as a finished plugin's is
    assert (container.status, container.attrs["State"]["ExitCode"]) == ("exited", 137)
    (run,) = settled_runs(service, f"plugin-{jid}")
    assert run["state_type"] == "FAILED"


def test_docker_plugin_whose_image_does_not_exist(fslink_service: Service):
    _, _, result = finished_plugin(fslink_service, "true", image=MISSING_IMAGE)
    assert (result["status"], result["message"]) == (
        "finishedWithError", f"Image {MISSING_IMAGE} is not available on the Docker engine")


def test_held_slurm_job_is_removed_at_the_start_timeout(slurm: Service):
    with block_fields(slurm, "slurm-compute", start_timeout_seconds=4, sbatch_options=["--hold"]):
        jid, _, result = finished_plugin(slurm, "echo never")
    assert result["status"] == "finishedWithError"
    assert result["message"].startswith("Plugin did not start within 4 s: Slurm job ")
    assert result["message"].endswith(" PENDING (JobHeldUser)")
    job_id = result["message"].split()[-3]
    squeue = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}"], capture_output=True, text=True)
    assert squeue.stdout.strip() == ""  # cancelled


def test_kubernetes_job_is_stopped_at_its_time_limit(kubernetes: Service):
    with block_fields(kubernetes, "kubernetes-compute", max_job_seconds=8):
        _, _, result = finished_plugin(kubernetes, "echo start; sleep 300")
    assert (result["status"], result["message"]) == ("finishedWithError", "Job hit its time limit of 8 s")


def test_kubernetes_pod_whose_image_cannot_be_pulled(kubernetes: Service):
    cluster = KubernetesCompute(store_base=str(kubernetes.store_base))
    with block_fields(kubernetes, "kubernetes-compute", start_timeout_seconds=10):
        jid, _, result = finished_plugin(kubernetes, "true", image=MISSING_IMAGE)
    assert result["status"] == "finishedWithError"
    assert result["message"].startswith("Plugin did not start within 10 s: ")
    assert any(reason in result["message"] for reason in ("ErrImagePull", "ImagePullBackOff")), result
    assert cluster.state(jid) is None  # its Job is removed


def test_unschedulable_kubernetes_pod(kubernetes: Service):
    cluster = KubernetesCompute(store_base=str(kubernetes.store_base))
    with block_fields(kubernetes, "kubernetes-compute", start_timeout_seconds=6,
                      node_selector={"example.org/no-such-node": "true"}):
        client = kubernetes.client()
        jid, _, result = finished_plugin(kubernetes, "true")
    assert result["status"] == "finishedWithError"
    assert result["message"].startswith("Plugin did not start within 6 s: Unschedulable: 0/1 nodes are available")
    assert cluster.state(jid) is None
    assert client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] == "finishedWithError"
