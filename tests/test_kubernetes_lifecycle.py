"""fslink lifecycles over HTTP with python-pfconclient where the plugin runs as a real
Kubernetes Job (CONTAINER_ENV=kubernetes): success, failure, and DELETE while running."""

from __future__ import annotations

import time
import uuid

import pytest
from pfconclient.client import JobType
from pfconclient.exceptions import PfconRequestException

from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture
from test_fslink_lifecycle import copy_inputs, new_jid, prefect_runs
from test_slurm_lifecycle import sh_plugin
from prefect_pfcon.blocks.compute import KubernetesCompute


@pytest.fixture(scope="module")
def service(kubernetes_service: Service) -> Service:
    make_fslink_fixture(kubernetes_service.store_base)
    return kubernetes_service


@pytest.fixture(scope="module")
def cluster(service: Service) -> KubernetesCompute:
    return KubernetesCompute(store_base=str(service.store_base))


def copied(service: Service) -> tuple[str, str]:
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert copy_inputs(service, jid, output_dir)["status"] == "finishedSuccessfully"
    return jid, output_dir


def test_server_info(service):
    info = service.client().get_server_info()
    assert (info["container_env"], info["compute_volume_type"]) == ("kubernetes", "host")


def test_full_lifecycle_through_kubernetes(service, cluster):
    client = service.client()
    jid, output_dir = copied(service)
    answer = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, 'echo start; cp -r "$1"/. "$2"/; echo done'))
    assert answer["compute"]["status"] == "notStarted"
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert (plugin["status"], plugin["message"]) == ("finishedSuccessfully", "finished"), plugin
    assert plugin["logs"] == "start\ndone\n"
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == FSLINK_STAGED
    job = cluster.batch.read_namespaced_job(jid, "default")  # a Job named after the jid
    assert job.metadata.labels["org.test.suite"] == "prefect-pfcon"
    assert job.metadata.labels["io.prefect.flow-run-id"] == prefect_runs(service, f"plugin-{jid}")[0]["id"]
    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    client.delete_job(JobType.PLUGIN, jid)
    assert cluster.state(jid) is None
    with pytest.raises(PfconRequestException):
        client.get_job_status(JobType.PLUGIN, jid)


def test_failing_plugin(service):
    client = service.client()
    jid, output_dir = copied(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo failing; exit 3"))
    result = wait_status(client, JobType.PLUGIN, jid)
    assert result["status"] == "finishedWithError"
    assert result["message"] == "Job has reached the specified backoff limit"
    assert result["logs"] == "failing\nError\n"


def test_delete_removes_a_running_job(service, cluster):
    client = service.client()
    jid, output_dir = copied(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo start; sleep 600"))
    deadline = time.monotonic() + 60
    while client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] != "started":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.delete_job(JobType.PLUGIN, jid)
    assert cluster.state(jid) is None
    assert cluster.core.list_namespaced_pod("default", label_selector=f"job-name={jid}").items == []
    assert (service.store_base / f"key-{jid}" / "incoming" / "a.txt").exists()  # data stays
    (run,) = prefect_runs(service, f"plugin-{jid}")
    assert run["state_type"] in ("CANCELLED", "CANCELLING")
