"""fslink lifecycles over HTTP with python-pfconclient where the plugin runs as a real
Kubernetes Job (CONTAINER_ENV=kubernetes): success, failure, and DELETE while running."""

from __future__ import annotations


import pytest
from pfconclient.client import JobType

from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, make_fslink_fixture
from prefect_pfcon.blocks.compute import KubernetesCompute
from test_fslink_lifecycle import (
    copied_job,
    delete_and_forget,
    finished_plugin,
    settled_runs,
    sh_plugin,
    submit_and_wait_started,
)


@pytest.fixture(scope="module")
def service(kubernetes_service: Service) -> Service:
    make_fslink_fixture(kubernetes_service.store_base)
    return kubernetes_service


@pytest.fixture(scope="module")
def cluster(service: Service) -> KubernetesCompute:
    return KubernetesCompute(store_base=str(service.store_base))


def test_server_info(service):
    info = service.client().get_server_info()
    assert (info["container_env"], info["compute_volume_type"]) == ("kubernetes", "host")


def test_full_lifecycle_through_kubernetes(service, cluster):
    client = service.client()
    jid, output_dir = copied_job(service)
    answer = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, 'echo start; cp -r "$1"/. "$2"/; echo done'))
    assert answer["compute"]["status"] == "notStarted"
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert (plugin["status"], plugin["message"]) == ("finishedSuccessfully", "finished"), plugin
    assert plugin["logs"] == "start\ndone\n"
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == FSLINK_STAGED
    job = cluster.batch.read_namespaced_job(jid, "default")  # a Job named after the jid
    assert job.metadata.labels["org.test.suite"] == "prefect-pfcon"
    assert job.metadata.labels["io.prefect.task-run-id"] == settled_runs(service, f"plugin-{jid}")[0]["id"]
    delete_and_forget(client, jid)
    assert cluster.state(jid) is None


def test_failing_plugin(service):
    _, _, result = finished_plugin(service, "echo failing; exit 3")
    assert result["status"] == "finishedWithError"
    assert result["message"] == "Job has reached the specified backoff limit"
    assert result["logs"] == "failing\nError\n"


def test_delete_removes_a_running_job(service, cluster):
    client = service.client()
    jid, output_dir = copied_job(service)
    submit_and_wait_started(client, jid, sh_plugin(output_dir, "echo start; sleep 600"))
    client.delete_job(JobType.PLUGIN, jid)
    assert cluster.state(jid) is None
    assert cluster.core.list_namespaced_pod("default", label_selector=f"job-name={jid}").items == []
    assert (service.store_base / f"key-{jid}" / "incoming" / "a.txt").exists()  # data stays
    (run,) = settled_runs(service, f"plugin-{jid}")
    assert run["state_type"] in ("CANCELLED", "CANCELLING")
