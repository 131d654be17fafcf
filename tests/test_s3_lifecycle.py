"""Complete s3 lifecycles over HTTP with python-pfconclient, against a real S3 server (the test
Swift's s3api): inputs downloaded from objects (links resolved), outputs uploaded back, failures
of the S3 server as readable one-line messages without credentials."""

from __future__ import annotations

import io
import uuid
import zipfile

import pytest
from fsspec.implementations.dirfs import DirFileSystem
from pfconclient.client import JobType

from conftest import Service, free_port, raw, storage_block_fields, wait_status
from fixtures_tree import FSLINK_FIXTURE, FSLINK_STAGED, tree
from s3_objects import s3_bucket
from swift_objects import seed
from test_fslink_lifecycle import prefect_runs
from test_swift_lifecycle import OUTPUTS, run_copy, run_plugin

BLOCK = "s3-storage"


def new_jid() -> str:
    return f"h5-s3-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def objects(s3_credentials) -> DirFileSystem:
    bucket = s3_bucket(s3_credentials)
    seed(bucket, FSLINK_FIXTURE)
    return bucket


def test_server_info(s3_service: Service, s3_credentials):
    info = s3_service.client().get_server_info()
    assert {key: info[key] for key in ("pfcon_innetwork", "storage_env", "requires_copy_job",
                                       "requires_upload_job", "s3_endpoint_url")} == {
        "pfcon_innetwork": True, "storage_env": "s3", "requires_copy_job": True,
        "requires_upload_job": True, "s3_endpoint_url": s3_credentials["S3_ENDPOINT_URL"]}
    assert "swift_auth_url" not in info
    assert s3_credentials["S3_SECRET_KEY"] not in str(info)


def test_full_s3_lifecycle(s3_service: Service, objects: DirFileSystem):
    service, store = s3_service, s3_service.store_base
    client = service.client()
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"

    copy = run_copy(service, jid, ["home/alice/feed/in"], output_dir)  # two .chrislink objects in it
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


def test_failed_upload_is_rescheduled_and_sends_only_what_is_missing(s3_service: Service, objects):
    service, store = s3_service, s3_service.store_base
    client = service.client()
    jid, output_dir = new_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    assert run_copy(service, jid, ["SHARED/data"], output_dir)["status"] == "finishedSuccessfully"
    # keys over 1024 bytes are refused: a real upload failure after some files went up
    deep = "/".join(["d" * 200] * 6)
    script = f'cp "$3"/* "$4"/; mkdir -p "$4/{deep}"; echo deep > "$4/{deep}/f.txt"'
    assert run_plugin(service, jid, output_dir, script)["status"] == "finishedSuccessfully"

    client.submit_job(JobType.UPLOAD, jid, {"job_output_path": output_dir})
    failed = wait_status(client, JobType.UPLOAD, jid)
    assert failed["status"] == "finishedWithError"
    assert failed["message"] == "S3: Your key is too long (KeyTooLongError)", failed["message"]

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


def test_missing_prefix_is_a_readable_error(s3_service: Service, objects):
    copy = run_copy(s3_service, new_jid(), ["home/nobody/nothing"], "home/nobody/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "Input path not found in the storage: home/nobody/nothing"


def test_link_to_output_ancestor_is_refused(s3_service: Service, objects):
    seed(objects, {"home/eve/in/up.chrislink": "home/eve"})
    copy = run_copy(s3_service, new_jid(), ["home/eve/in"], "home/eve/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "Invalid input path: home/eve"


def test_wrong_secret_key_is_a_readable_error(s3_service: Service, objects):
    with storage_block_fields(s3_service, BLOCK, secret_key="not-the-secret"):
        copy = run_copy(s3_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == (
        "S3: The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method (SignatureDoesNotMatch)")
    assert "not-the-secret" not in copy["logs"] and "not-the-secret" not in copy["message"]


def test_missing_bucket_is_a_readable_error(s3_service: Service, objects):
    with storage_block_fields(s3_service, BLOCK, bucket_name=f"h5-missing-{uuid.uuid4().hex[:8]}"):
        copy = run_copy(s3_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "S3: The specified bucket does not exist (NoSuchBucket)"


def test_endpoint_down_is_a_readable_error(s3_service: Service, s3_credentials, objects):
    closed = f"http://127.0.0.1:{free_port()}"  # bound once, then nobody listens there
    with storage_block_fields(s3_service, BLOCK, endpoint_url=closed):
        copy = run_copy(s3_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == f"S3: Could not connect to the endpoint URL {closed} (EndpointConnectionError)"
    assert s3_credentials["S3_SECRET_KEY"] not in copy["logs"]


def test_file_endpoint_without_key_dir_is_404(s3_service: Service):
    assert raw(s3_service, "GET", "pluginjobs/nojob/file/").status_code == 404
    listing = raw(s3_service, "GET", "pluginjobs/h5-fresh-job/file/", params={"job_output_path": "x/y"})
    assert listing.status_code == 200
    assert listing.json() == {"job_output_path": "x/y", "rel_file_paths": []}
