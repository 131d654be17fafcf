"""Complete s3 lifecycles over HTTP with python-pfconclient, against a real S3 server (the test
Swift's s3api): inputs downloaded from objects (links resolved), outputs uploaded back, failures
of the S3 server as readable one-line messages without credentials."""

from __future__ import annotations

import uuid

import pytest
from fsspec.implementations.dirfs import DirFileSystem

from conftest import Service, free_port, raw, block_fields
from fixtures_tree import FSLINK_FIXTURE
from object_storage_checks import check_failed_upload_is_reposted, check_full_lifecycle, run_copy
from s3_objects import s3_bucket
from swift_objects import seed

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
    check_full_lifecycle(s3_service, objects, new_jid())


def test_failed_upload_is_rescheduled_and_sends_only_what_is_missing(s3_service: Service, objects):
    def check_failure(failed: dict) -> None:
        assert failed["message"] == "S3: Your key is too long (KeyTooLongError)", failed["message"]

    check_failed_upload_is_reposted(s3_service, objects, new_jid(), check_failure)


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
    with block_fields(s3_service, BLOCK, secret_key="not-the-secret"):
        copy = run_copy(s3_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == (
        "S3: The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method (SignatureDoesNotMatch)")
    assert "not-the-secret" not in copy["logs"] and "not-the-secret" not in copy["message"]


def test_missing_bucket_is_a_readable_error(s3_service: Service, objects):
    with block_fields(s3_service, BLOCK, bucket_name=f"h5-missing-{uuid.uuid4().hex[:8]}"):
        copy = run_copy(s3_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "S3: The specified bucket does not exist (NoSuchBucket)"


def test_endpoint_down_is_a_readable_error(s3_service: Service, s3_credentials, objects):
    closed = f"http://127.0.0.1:{free_port()}"  # bound once, then nobody listens there
    with block_fields(s3_service, BLOCK, endpoint_url=closed):
        copy = run_copy(s3_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == f"S3: Could not connect to the endpoint URL {closed} (EndpointConnectionError)"
    assert s3_credentials["S3_SECRET_KEY"] not in copy["logs"]


def test_file_endpoint_without_key_dir_is_404(s3_service: Service):
    assert raw(s3_service, "GET", "pluginjobs/nojob/file/").status_code == 404
    listing = raw(s3_service, "GET", "pluginjobs/h5-fresh-job/file/", params={"job_output_path": "x/y"})
    assert listing.status_code == 200
    assert listing.json() == {"job_output_path": "x/y", "rel_file_paths": []}
