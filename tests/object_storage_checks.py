"""Checks shared by the object-storage modes (swift, s3): the same python-pfconclient steps
against a service whose storage is a real object store, seen directly through ``objects``."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable

from fsspec.implementations.dirfs import DirFileSystem
from pfconclient.client import JobType

from conftest import Service, wait_status
from fixtures_tree import FSLINK_STAGED, tree
from swift_objects import seed
from test_fslink_lifecycle import plugin_descriptors, settled_runs

# $3=/share/incoming (ds) $4=/share/outgoing; the plugin also leaves a link file and a symlink
OBJECTS_SCRIPT = (
    'echo start; cp -r "$3"/. "$4"/; echo new > "$4"/new.txt; '
    'echo home/bob > "$4"/evil.chrislink; ln -s /etc/hostname "$4"/sym; echo done'
)
OUTPUTS = sorted([*FSLINK_STAGED, "new.txt"])


def run_copy(service: Service, jid: str, input_dirs: list[str], output_dir: str) -> dict:
    client = service.client()
    client.submit_job(JobType.COPY, jid, {"input_dirs": input_dirs, "output_dir": output_dir})
    return wait_status(client, JobType.COPY, jid)


def run_plugin(service: Service, jid: str, output_dir: str, script: str = OBJECTS_SCRIPT) -> dict:
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, plugin_descriptors(output_dir, entrypoint=["sh", "-c", script, "sh"]))
    return wait_status(client, JobType.PLUGIN, jid)


def check_full_lifecycle(service: Service, objects: DirFileSystem, jid: str) -> None:
    """Copy (two ``.chrislink`` objects resolved), plugin, listing, zip, upload, a repeated
    upload that does nothing, delete; the uploaded objects stay."""
    store, client = service.store_base, service.client()
    output_dir = f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"

    copy = run_copy(service, jid, ["home/alice/feed/in"], output_dir)
    assert copy["status"] == "finishedSuccessfully", copy
    assert "Staged 4 files" in copy["logs"]
    assert tree(store / f"key-{jid}" / "incoming") == FSLINK_STAGED

    plugin = run_plugin(service, jid, output_dir)
    assert plugin["status"] == "finishedSuccessfully", plugin
    outgoing = store / f"key-{jid}" / "outgoing"
    assert (outgoing / "new.txt").read_text() == "new\n" and (outgoing / "sym").is_symlink()

    listing = client.get_plugin_job_json_data(jid, "/" + output_dir)
    assert listing["job_output_path"] == output_dir
    assert sorted(listing["rel_file_paths"]) == OUTPUTS  # no link file, no symlink
    archive = zipfile.ZipFile(io.BytesIO(client.get_plugin_job_zip_data(jid)))
    assert sorted(archive.namelist()) == OUTPUTS

    first = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    assert first["compute"]["status"] == "notStarted" and first["compute"]["cmd"] == "pfcon-upload"
    upload = wait_status(client, JobType.UPLOAD, jid)
    assert upload["status"] == "finishedSuccessfully", upload
    assert f"Uploaded {len(OUTPUTS)} files" in upload["logs"]
    assert sorted(objects.find(output_dir)) == [f"{output_dir}/{rel}" for rel in OUTPUTS]
    assert objects.cat_file(f"{output_dir}/home_bob_uploads_x/x.txt") == b"x"

    repeat = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": "elsewhere"})
    assert repeat["compute"]["status"] == "finishedSuccessfully"
    assert len(settled_runs(service, f"upload-{jid}", count=1)) == 1  # nothing uploaded twice
    assert not objects.exists("elsewhere")

    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    assert not (store / f"key-{jid}").exists()
    assert objects.exists(f"{output_dir}/new.txt")  # delete never touches the storage


def check_failed_upload_is_reposted(
    service: Service, objects: DirFileSystem, jid: str, check_failure: Callable[[dict], None]
) -> None:
    """An upload that really fails (an object name over 1024 bytes, refused by the store) after
    some files went up, ``check_failure``-d, then posted again: only what is missing is sent."""
    store, client = service.store_base, service.client()
    output_dir = f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert run_copy(service, jid, ["SHARED/data"], output_dir)["status"] == "finishedSuccessfully"
    deep = "/".join(["d" * 200] * 6)
    script = f'cp "$3"/* "$4"/; mkdir -p "$4/{deep}"; echo deep > "$4/{deep}/f.txt"'
    assert run_plugin(service, jid, output_dir, script)["status"] == "finishedSuccessfully"

    client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    failed = wait_status(client, JobType.UPLOAD, jid)
    assert failed["status"] == "finishedWithError"
    check_failure(failed)

    (store / f"key-{jid}" / "outgoing" / ("d" * 200)).rename(store / f"key-{jid}" / "dropped")
    seed(objects, {f"{output_dir}/s1.txt": "s1"})  # already there: the retry must skip it
    missing = 2 - len(objects.find(output_dir))
    retry = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    assert retry["compute"]["status"] == "notStarted"
    done = wait_status(client, JobType.UPLOAD, jid)
    assert done["status"] == "finishedSuccessfully", done
    assert f"Uploaded {missing} files" in done["logs"] and missing <= 1
    assert sorted(objects.find(output_dir)) == [f"{output_dir}/s1.txt", f"{output_dir}/s2.txt"]
    assert len(settled_runs(service, f"upload-{jid}", count=2)) == 2
