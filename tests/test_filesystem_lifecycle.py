"""A complete filesystem-mode lifecycle: no copy step, the plugin mounts its dirs in place."""

from __future__ import annotations

import uuid

from pfconclient.client import JobType

from conftest import Service, raw, wait_status
from test_fslink_lifecycle import BUSYBOX, new_jid

SCRIPT = 'ls "$1"; cp -r "$1"/. "$2"/; echo made > "$2"/made.txt'


def test_server_info(filesystem_service: Service):
    info = filesystem_service.client().get_server_info()
    assert {k: v for k, v in info.items() if k != "server_version"} == {
        "pfcon_innetwork": True,
        "storage_env": "filesystem",
        "requires_copy_job": False,
        "requires_upload_job": False,
        "container_env": "docker",
        "compute_volume_type": "host",
    }


def test_full_filesystem_lifecycle(filesystem_service: Service, docker_client):
    service, store = filesystem_service, filesystem_service.store_base
    client = service.client()
    jid = new_jid()
    input_dir, output_dir = f"home/dan/in-{uuid.uuid4().hex[:6]}", f"home/dan/out-{uuid.uuid4().hex[:6]}"
    (store / input_dir / "sub").mkdir(parents=True)
    (store / input_dir / "a.txt").write_text("a")
    (store / input_dir / "sub" / "b.txt").write_text("b")
    (store / input_dir / "keep.chrislink").write_text("home/x")  # not resolved in this mode

    copy = client.submit_job(JobType.COPY, jid, {"input_dirs": [input_dir], "output_dir": output_dir})
    assert copy == {"compute": {"jid": jid, "image": "", "cmd": "", "status": "finishedSuccessfully",
                                "message": "copySkipped", "timestamp": "", "logs": ""}}

    descriptors = {
        "entrypoint": ["sh", "-c", SCRIPT, "sh"], "auid": "cube", "number_of_workers": 1,
        "cpu_limit": 500, "memory_limit": 100, "gpu_limit": 0, "image": BUSYBOX, "type": "ds",
        "output_dir": output_dir,
    }
    missing_inputs = raw(service, "POST", "pluginjobs/", data={**descriptors, "jid": jid})
    assert (missing_inputs.status_code, missing_inputs.json()) == (400, {"message": "input_dirs: field is required"})

    answer = client.submit_job(JobType.PLUGIN, jid, {**descriptors, "input_dirs": [input_dir]})
    data = answer["data"]
    assert (data["jid"], data["nfiles"], data["path"]) == (jid, 3, str(store / input_dir))
    assert len(data["timestamp"]) == len("2026-11-22 11:12:31.963953")
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    binds = docker_client.api.inspect_container(jid)["HostConfig"]["Binds"]
    assert sorted(binds) == sorted([f"{store / input_dir}:/share/incoming:ro",
                                    f"{store / output_dir}:/share/outgoing:rw"])
    assert docker_client.api.inspect_container(jid)["HostConfig"]["NanoCpus"] == 5 * 10**8

    listing = client.get_plugin_job_json_data(jid, output_dir)
    assert sorted(listing["rel_file_paths"]) == ["a.txt", "keep.chrislink", "made.txt", "sub/b.txt"]
    assert (store / output_dir / "keep.chrislink").exists()  # filesystem mode deletes no links

    upload = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    assert upload["compute"]["message"] == "uploadSkipped"
    delete = client.submit_job(JobType.DELETE, jid, {})
    assert delete["compute"]["message"] == "deleteSkipped"
    for job_type in (JobType.COPY, JobType.PLUGIN, JobType.UPLOAD, JobType.DELETE):
        client.delete_job(job_type, jid)
    assert (store / output_dir / "made.txt").exists() and (store / input_dir / "a.txt").exists()
