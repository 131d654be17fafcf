"""Complete swift lifecycles over HTTP with python-pfconclient, against the real Swift:
inputs downloaded from objects (links resolved), outputs uploaded back, bad inputs readable."""

from __future__ import annotations

import io
import uuid
import zipfile

import pytest
from fsspec.implementations.dirfs import DirFileSystem
from pfconclient.client import JobType

from conftest import Service, raw, storage_block_fields, wait_status
from fixtures_tree import FSLINK_FIXTURE, FSLINK_STAGED, tree
from swift_objects import seed, swift_container
from test_fslink_lifecycle import new_jid, plugin_descriptors, prefect_runs

# $3=/share/incoming (ds) $4=/share/outgoing; the plugin also leaves a link file and a symlink
SWIFT_SCRIPT = (
    'echo start; cp -r "$3"/. "$4"/; echo new > "$4"/new.txt; '
    'echo home/bob > "$4"/evil.chrislink; ln -s /etc/hostname "$4"/sym; echo done'
)
OUTPUTS = sorted([*FSLINK_STAGED, "new.txt"])


@pytest.fixture(scope="module")
def objects(swift_credentials) -> DirFileSystem:
    container = swift_container(swift_credentials)
    seed(container, FSLINK_FIXTURE)
    return container


def run_copy(service: Service, jid: str, input_dirs: list[str], output_dir: str) -> dict:
    client = service.client()
    client.submit_job(JobType.COPY, jid, {"input_dirs": input_dirs, "output_dir": output_dir})
    return wait_status(client, JobType.COPY, jid)


def run_plugin(service: Service, jid: str, output_dir: str, script: str = SWIFT_SCRIPT) -> dict:
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, plugin_descriptors(output_dir, entrypoint=["sh", "-c", script, "sh"]))
    return wait_status(client, JobType.PLUGIN, jid)


def test_server_info(swift_service: Service, swift_credentials):
    info = swift_service.client().get_server_info()
    assert {key: info[key] for key in ("pfcon_innetwork", "storage_env", "requires_copy_job",
                                       "requires_upload_job", "swift_auth_url")} == {
        "pfcon_innetwork": True, "storage_env": "swift", "requires_copy_job": True,
        "requires_upload_job": True, "swift_auth_url": swift_credentials["SWIFT_AUTH_URL"]}
    assert swift_credentials["SWIFT_KEY"] not in str(info)


def test_full_swift_lifecycle(swift_service: Service, objects: DirFileSystem):
    service, store = swift_service, swift_service.store_base
    client = service.client()
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"

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
    assert len(prefect_runs(service, f"upload-{jid}")) == 1  # nothing uploaded twice
    assert not objects.exists("elsewhere")

    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    assert not (store / f"key-{jid}").exists()
    assert objects.exists(f"{output_dir}/new.txt")  # delete never touches the storage


def test_failed_upload_is_rescheduled_and_skips_what_is_there(swift_service: Service, objects):
    service, store = swift_service, swift_service.store_base
    client = service.client()
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert run_copy(service, jid, ["SHARED/data"], output_dir)["status"] == "finishedSuccessfully"
    # Swift refuses object names over 1024 bytes: a real upload failure after some files went up
    deep = "/".join(["d" * 200] * 6)
    script = f'cp "$3"/* "$4"/; mkdir -p "$4/{deep}"; echo deep > "$4/{deep}/f.txt"'
    assert run_plugin(service, jid, output_dir, script)["status"] == "finishedSuccessfully"

    client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    failed = wait_status(client, JobType.UPLOAD, jid)
    assert failed["status"] == "finishedWithError"
    assert "Swift" in failed["message"] and "400" in failed["message"], failed["message"]
    assert swift_service_key_hidden(failed)

    (store / f"key-{jid}" / "outgoing" / ("d" * 200)).rename(store / f"key-{jid}" / "dropped")
    seed(objects, {f"{output_dir}/s1.txt": "s1"})  # already there: the retry must skip it
    missing = 2 - len(objects.find(output_dir))
    retry = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    assert retry["compute"]["status"] == "notStarted"
    done = wait_status(client, JobType.UPLOAD, jid)
    assert done["status"] == "finishedSuccessfully", done
    assert f"Uploaded {missing} files" in done["logs"] and missing <= 1
    assert sorted(objects.find(output_dir)) == [f"{output_dir}/s1.txt", f"{output_dir}/s2.txt"]
    assert len(prefect_runs(service, f"upload-{jid}")) == 2


def swift_service_key_hidden(compute: dict) -> bool:
    return "testing" not in compute["message"] and "testing" not in compute["logs"]


def test_missing_prefix_is_a_readable_error(swift_service: Service, objects):
    copy = run_copy(swift_service, new_jid(), ["home/nobody/nothing"], "home/nobody/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "Input path not found in the storage: home/nobody/nothing"


def test_link_to_output_ancestor_is_refused(swift_service: Service, objects):
    seed(objects, {"home/eve/in/up.chrislink": "home/eve"})
    copy = run_copy(swift_service, new_jid(), ["home/eve/in"], "home/eve/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "Invalid input path: home/eve"


def test_wrong_swift_key_is_a_readable_error(swift_service: Service, objects):
    with storage_block_fields(swift_service, "swift-storage", key="not-the-key"):
        copy = run_copy(swift_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "Swift: Auth GET failed (401 Unauthorized)"
    assert "not-the-key" not in copy["logs"]


def test_file_endpoint_without_key_dir_is_404(swift_service: Service):
    assert raw(swift_service, "GET", "pluginjobs/nojob/file/").status_code == 404
    listing = raw(swift_service, "GET", "pluginjobs/fresh-job/file/", params={"job_output_path": "x/y"})
    assert listing.status_code == 200
    assert listing.json() == {"job_output_path": "x/y", "rel_file_paths": []}
