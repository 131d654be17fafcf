"""Hostile inputs on the real service: images that would be runtime options, containers
prefect-pfcon did not create, names and links that would stage outside ``incoming`` or too
much, special files, and what a plugin container may do (no device nodes, bounded processes)."""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsspec.implementations.dirfs import DirFileSystem
from pfconclient.client import JobType

from conftest import Service, fslink_replica, raw, wait_status
from fixtures_tree import FSLINK_STAGED, tree
from prefect_pfcon.blocks.compute.base import PLUGIN_CAPABILITIES
from prefect_pfcon.names import FLOW_RUN_LABEL, JID_LABEL
from swift_objects import delete_raw, put_raw, swift_container
from test_fslink_lifecycle import BUSYBOX, copy_inputs, plugin_descriptors, prefect_runs, sh_plugin

PIDS_LIMIT = 50
HOSTILE_IMAGES = ["--privileged", "-v", "--volume=/:/host", "a b", "UPPER/case", "local/busybox:test --rm",
                  "busybox;id", "", "x" * 300]
NOT_OURS = "exists and was not created by prefect-pfcon; remove it or use another jid"


def h3_jid() -> str:
    return f"h3-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def service(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    """fslink with a low PFCON_PIDS_LIMIT, so a fork bomb meets it quickly."""
    with fslink_replica(session_tmp, fslink_service, "h3-hardened", {"PFCON_PIDS_LIMIT": str(PIDS_LIMIT)}) as replica:
        yield replica


def copied(service: Service, input_dirs=("home/alice/feed/in",)) -> tuple[str, str]:
    jid, output_dir = h3_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert copy_inputs(service, jid, output_dir, input_dirs)["status"] == "finishedSuccessfully"
    return jid, output_dir


# ----- user values are data, never options -------------------------------------------------


@pytest.mark.parametrize("image", HOSTILE_IMAGES)
def test_hostile_images_are_400_and_nothing_runs(service: Service, image: str):
    jid = h3_jid()
    form = {"jid": jid, **plugin_descriptors("home/alice/feed/out", image=image)}
    response = raw(service, "POST", "pluginjobs/", data=form)
    assert response.status_code == 400, response.text
    assert "image" in response.json()["message"], response.json()
    assert "is not a valid image reference" in response.json()["message"]["image"]
    assert prefect_runs(service, f"plugin-{jid}") == []


def test_a_hostile_image_from_the_prefect_ui_never_reaches_the_engine(service: Service, docker_client):
    jid = h3_jid()
    deployment = service.prefect("get", "/deployments/name/pfcon-job/pfcon").json()
    parameters = {"job": {"plugin": {"image": "--privileged", "entrypoint": ["sh", "-c", "echo ran"]},
                          "input_dirs": ["home/alice/feed/in"], "output_dir": f"home/alice/ui-{jid}", "jid": jid},
                  "storage_block": "h3-hardened-storage", "compute_block": "h3-hardened-compute"}
    created = service.prefect("post", f"/deployments/{deployment['id']}/create_flow_run",
                              json={"parameters": parameters})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (run := service.prefect("get", f"/flow_runs/{run_id}").json())["state_type"] not in (
            "COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        assert time.monotonic() < deadline, run["state"]
        time.sleep(0.5)
    assert run["state_type"] == "FAILED" and "image reference" in run["state"]["message"], run["state"]
    assert docker_client.containers.list(all=True, ignore_removed=True, filters={"name": jid}) == []
    assert prefect_runs(service, f"copy-{jid}") == []  # refused before any step


# ----- only our containers -----------------------------------------------------------------


@pytest.mark.parametrize("with_jid_label", [False, True], ids=["unlabelled", "jid-label-only"])
def test_a_container_not_ours_is_never_removed(service: Service, docker_client, with_jid_label: bool):
    jid, output_dir = copied(service)
    labels = {JID_LABEL: jid} if with_jid_label else {}
    stranger = docker_client.containers.run(BUSYBOX, "sleep 300", name=jid, detach=True, network_mode="none",
                                            labels=labels)
    try:
        client = service.client()
        client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo must-not-run"))
        plugin = wait_status(client, JobType.PLUGIN, jid)
        assert plugin["status"] == "finishedWithError"
        assert plugin["message"] == f"A container named {jid} {NOT_OURS}", plugin
        stranger.reload()
        assert stranger.status == "running" and stranger.labels == labels
        assert raw(service, "DELETE", f"pluginjobs/{jid}/").status_code == 204
        stranger.reload()  # raises if the DELETE removed it
        assert stranger.status == "running"
    finally:
        stranger.remove(force=True)


# ----- confined staging --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "form", "reason"),
    [
        ("copyjobs/", {"input_dirs": "/", "output_dir": "home/h3/out"}, "input_dirs: Path '/' is the whole storeBase"),
        ("copyjobs/", {"input_dirs": "key-other/incoming", "output_dir": "home/h3/out"},
         "input_dirs: Path 'key-other/incoming' is inside a job's key dir"),
        ("copyjobs/", {"input_dirs": "home/h3", "output_dir": "."}, "output_dir: Path '.' is the whole storeBase"),
        ("uploadjobs/", {"job_output_path": "key-other"}, "job_output_path: Path 'key-other' is inside a job's key dir"),
    ],
    ids=["input-root", "input-key-dir", "output-root", "upload-key-dir"],
)
def test_job_paths_naming_every_file_or_a_key_dir_are_400(swift_service: Service, step: str, form: dict, reason: str):
    jid = h3_jid()
    answer = raw(swift_service, "POST", step, data={"jid": jid, **form})
    assert (answer.status_code, answer.json()) == (400, {"message": reason})
    assert not (swift_service.store_base / f"key-{jid}").exists()


@pytest.mark.parametrize("content", ["", ".", "/", "home/h3", "home/h3/links/./"],
                         ids=["empty", "dot", "slash", "ancestor", "ancestor-dot"])
def test_links_to_the_storage_root_or_an_input_ancestor_are_refused(service: Service, content: str):
    store = service.store_base
    input_dir = f"home/h3/links/in-{uuid.uuid4().hex[:6]}"
    (store / input_dir).mkdir(parents=True)
    (store / input_dir / "a.txt").write_text("a")
    (store / input_dir / "all.chrislink").write_text(content)
    jid = h3_jid()
    copy = copy_inputs(service, jid, "home/h3/out", [input_dir])
    assert copy["status"] == "finishedWithError"
    assert copy["message"].startswith("Invalid input path: "), copy
    assert tree(store / f"key-{jid}" / "incoming") == []


def test_fifos_and_device_nodes_are_not_staged(service: Service):
    store = service.store_base
    input_dir = f"home/h3/special-{uuid.uuid4().hex[:6]}"
    (store / input_dir).mkdir(parents=True)
    (store / input_dir / "a.txt").write_text("a")
    os.mkfifo(store / input_dir / "fifo")
    os.mknod(store / input_dir / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
    jid = h3_jid()
    copy = copy_inputs(service, jid, "home/h3/out", [input_dir])
    assert copy["status"] == "finishedSuccessfully", copy
    incoming = store / f"key-{jid}" / "incoming"
    assert sorted(entry.name for entry in incoming.iterdir()) == ["a.txt"]


@pytest.fixture(scope="module")
def objects(swift_credentials) -> DirFileSystem:
    return swift_container(swift_credentials)


def test_swift_object_names_that_leave_incoming_are_refused(swift_service: Service, objects, swift_credentials):
    tag = uuid.uuid4().hex[:8]
    escapes = {
        "dotdot": f"home/h3-{tag}/dotdot/{'../' * 12}tmp/h3-dotdot-{tag}.txt",
        "slashes": f"home/h3-{tag}/slashes//tmp/h3-slashes-{tag}.txt",
        "leading": f"/h3-leading-{tag}/a.txt",
    }
    inputs = {"dotdot": f"home/h3-{tag}/dotdot", "slashes": f"home/h3-{tag}/slashes"}
    for name in escapes.values():
        put_raw(swift_credentials, name, b"escaped")
    objects.pipe_file(f"home/h3-{tag}/dotdot/ok.txt", b"ok")
    objects.pipe_file(f"home/h3-{tag}/slashes/ok.txt", b"ok")
    try:
        # a leading-slash name is only found under the whole container, which no job may name
        root = raw(swift_service, "POST", "copyjobs/", data={"jid": h3_jid(), "input_dirs": "/",
                                                              "output_dir": f"home/h3-{tag}/out"})
        assert (root.status_code, root.json()) == (400, {"message": "input_dirs: Path '/' is the whole storeBase"})
        for case in inputs:
            jid = h3_jid()
            copy = copy_inputs(swift_service, jid, f"home/h3-{tag}/out", [inputs[case]])
            assert copy["status"] == "finishedWithError", (case, copy)
            assert "is not a plain relative path" in copy["message"] and f"h3-{case}-{tag}" in copy["message"], copy
            incoming = swift_service.store_base / f"key-{jid}" / "incoming"
            assert tree(incoming) == []
        for path in (Path(f"/tmp/h3-dotdot-{tag}.txt"), Path(f"/tmp/h3-slashes-{tag}.txt"),
                     Path(f"/h3-leading-{tag}")):
            assert not path.exists()
    finally:
        for name in escapes.values():
            delete_raw(swift_credentials, name)
        for rest in ("dotdot/ok.txt", "slashes/ok.txt"):
            objects.rm_file(f"home/h3-{tag}/{rest}")


# ----- plugin containers -------------------------------------------------------------------

CONFINED_SCRIPT = (  # the fork bomb runs in a child shell, which exits when a fork fails
    "mknod /tmp/zero c 1 5 2>/dev/null && echo mknod-allowed || echo mknod-refused; "
    "sh -c 'i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done' 2>/dev/null; "
    'set -- /proc/[0-9]*; echo "processes=$#"; kill -9 -1 2>/dev/null; echo done'
)


def test_plugins_cannot_make_devices_and_their_processes_are_bounded(service: Service, docker_client):
    jid, output_dir = copied(service)
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, CONFINED_SCRIPT))
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    lines = plugin["logs"].splitlines()
    assert "mknod-refused" in lines and lines[-1] == "done", lines
    processes = int(next(line for line in lines if line.startswith("processes=")).split("=")[1])
    assert 1 < processes <= PIDS_LIMIT  # 201 without the limit
    host = docker_client.api.inspect_container(jid)["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(PLUGIN_CAPABILITIES) and host["PidsLimit"] == PIDS_LIMIT
    labels = docker_client.api.inspect_container(jid)["Config"]["Labels"]
    assert labels[JID_LABEL] == jid and labels[FLOW_RUN_LABEL]
    assert raw(service, "DELETE", f"pluginjobs/{jid}/").status_code == 204
    assert docker_client.containers.list(all=True, ignore_removed=True, filters={"name": f"^{jid}$"}) == []  # ours: removed


def test_staged_inputs_reach_the_plugin_with_the_capabilities_it_keeps(service: Service):
    jid, output_dir = copied(service)
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, plugin_descriptors(output_dir))  # cp -r of the inputs as root
    assert wait_status(client, JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
    assert tree(service.store_base / output_dir) == sorted([*FSLINK_STAGED, "new.txt"])
    assert raw(service, "DELETE", f"pluginjobs/{jid}/").status_code == 204
