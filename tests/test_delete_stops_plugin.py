"""``PFCON_DELETE_STOPS_PLUGIN=true``: CUBE's cancel (a ``deletejobs/`` POST while the plugin
runs) stops the plugin's container, then deletes the job's data, where pfcon answers 409."""

from __future__ import annotations

from pathlib import Path

import docker
from pfconclient.client import JobType
from pfconclient.exceptions import PfconRequestException
import pytest

from prefect_pfcon.models import JobStep

from conftest import Service, fslink_replica, wait_status
from test_fslink_lifecycle import copied_job, sh_plugin, submit_and_wait_started


def test_a_delete_job_stops_a_running_plugin(session_tmp: Path, fslink_service: Service,
                                             docker_client: docker.DockerClient):
    with fslink_replica(session_tmp, fslink_service, "delete-stops", {"PFCON_DELETE_STOPS_PLUGIN": "true"}) as service:
        client = service.client()
        jid, out = copied_job(service)
        submit_and_wait_started(client, jid, sh_plugin(out, "sleep 300"))
        container = docker_client.containers.get(JobStep.PLUGIN.container_name(jid))
        client.submit_job(JobType.DELETE, jid, {})  # pfcon: 409, the plugin is still active
        # within wait_status's 120 s: the plugin did not sleep its 300 s
        assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
        with pytest.raises(docker.errors.NotFound):
            container.reload()
        assert not (service.store_base / f"key-{jid}").exists()
        with pytest.raises(PfconRequestException) as removed:
            client.get_job_status(JobType.PLUGIN, jid)
        assert removed.value.code == 404
