"""deploy/compose.yaml as a ChRIS site would run it: PostgreSQL, a Prefect server on it and
prefect-pfcon, all started by docker-compose from the image the test command built; a
python-pfconclient lifecycle is driven through it from this host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pfconclient.client import JobType

from compose_deployment import (PFCON_UID, SERVICES, ComposeProject, fslink_deployment,
                                project_containers, wait_healthy)
from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED
from test_fslink_lifecycle import copied_job, delete_and_forget, job_runs, settled_runs, sh_plugin


@pytest.fixture(scope="module")
def deployment(session_tmp: Path) -> Iterator[tuple[Service, ComposeProject]]:
    with fslink_deployment(session_tmp) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def service(deployment) -> Service:
    return deployment[0]


def test_services_run_healthy_and_unprivileged(deployment):
    service, project = deployment
    running = project_containers(project)
    assert set(running) == set(SERVICES)
    for name in ("prefect", "pfcon"):
        assert running[name].attrs["State"]["Health"]["Status"] == "healthy", name
        assert running[name].attrs["Config"]["User"] == f"{PFCON_UID}:{PFCON_UID}"  # the image's user
    assert requests.get(service.prefect_api_url + "/flows/filter", timeout=10).status_code == 401  # credentials
    assert service.prefect("get", "/admin/version").status_code == 200


def test_lifecycle_through_compose(service: Service, docker_client):
    client = service.client()
    jid, output_dir = copied_job(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, 'echo start; cp -r "$1"/. "$2"/; id -u; echo done'))
    plugin = wait_status(client, JobType.PLUGIN, jid, timeout=180)
    assert plugin["status"] == "finishedSuccessfully", plugin
    assert plugin["logs"] == f"start\n{PFCON_UID}\ndone\n"  # plugins run as the service's user
    assert sorted(client.get_plugin_job_json_data(jid, output_dir)["rel_file_paths"]) == FSLINK_STAGED
    assert (service.store_base / output_dir / "a.txt").stat().st_uid == PFCON_UID
    delete_and_forget(client, jid)
    assert not (service.store_base / f"key-{jid}").exists()
    run = job_runs(service, jid)[0]  # the job's flow run, on the compose Prefect server
    assert {task["name"] for task in settled_runs(service, f"plugin-{jid}")} == {f"plugin-{jid}"}
    assert run["tags"] and f"jid:{jid}" in run["tags"]


def test_a_restarted_service_loses_nothing(deployment):
    """`docker-compose restart pfcon` mid-plugin: the job book on the state volume brings the
    job back and the plugin finishes once."""
    service, project = deployment
    client = service.client()
    jid, output_dir = copied_job(service)
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, 'sleep 8; echo ran >> "$2"/runs.txt'))
    deadline = time.monotonic() + 60
    while client.get_job_status(JobType.PLUGIN, jid)["compute"]["status"] != "started":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    restarted = project.run("restart", "--timeout", "30", "pfcon")
    assert restarted.returncode == 0, restarted.stderr
    wait_healthy(project, len(SERVICES))
    client = service.client()
    assert wait_status(client, JobType.PLUGIN, jid, timeout=120)["status"] == "finishedSuccessfully"
    assert (service.store_base / output_dir / "runs.txt").read_text() == "ran\n"
    assert len(job_runs(service, jid)) == 1
