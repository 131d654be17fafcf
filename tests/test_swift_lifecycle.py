"""Complete swift lifecycles over HTTP with python-pfconclient, against the real Swift:
inputs downloaded from objects (links resolved), outputs uploaded back, bad inputs readable."""

from __future__ import annotations

import pytest
from fsspec.implementations.dirfs import DirFileSystem

from conftest import Service, raw, block_fields
from fixtures_tree import FSLINK_FIXTURE
from object_storage_checks import check_failed_upload_is_reposted, check_full_lifecycle, run_copy
from swift_objects import seed, swift_container
from test_fslink_lifecycle import new_jid


@pytest.fixture(scope="module")
def objects(swift_credentials) -> DirFileSystem:
    container = swift_container(swift_credentials)
    seed(container, FSLINK_FIXTURE)
    return container


def test_server_info(swift_service: Service, swift_credentials):
    info = swift_service.client().get_server_info()
    assert {key: info[key] for key in ("pfcon_innetwork", "storage_env", "requires_copy_job",
                                       "requires_upload_job", "swift_auth_url")} == {
        "pfcon_innetwork": True, "storage_env": "swift", "requires_copy_job": True,
        "requires_upload_job": True, "swift_auth_url": swift_credentials["SWIFT_AUTH_URL"]}
    assert swift_credentials["SWIFT_KEY"] not in str(info)


def test_full_swift_lifecycle(swift_service: Service, objects: DirFileSystem):
    check_full_lifecycle(swift_service, objects, new_jid())


def test_failed_upload_is_rescheduled_and_skips_what_is_there(swift_service: Service, objects):
    def check_failure(failed: dict) -> None:
        assert "Swift" in failed["message"] and "400" in failed["message"], failed["message"]
        assert swift_service_key_hidden(failed)

    check_failed_upload_is_reposted(swift_service, objects, new_jid(), check_failure)


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
    with block_fields(swift_service, "swift-storage", key="not-the-key"):
        copy = run_copy(swift_service, new_jid(), ["home/alice/feed/in"], "home/alice/feed/out")
    assert copy["status"] == "finishedWithError"
    assert copy["message"] == "Swift: Auth GET failed (401 Unauthorized)"
    assert "not-the-key" not in copy["logs"]


def test_file_endpoint_without_key_dir_is_404(swift_service: Service):
    assert raw(swift_service, "GET", "pluginjobs/nojob/file/").status_code == 404
    listing = raw(swift_service, "GET", "pluginjobs/fresh-job/file/", params={"job_output_path": "x/y"})
    assert listing.status_code == 200
    assert listing.json() == {"job_output_path": "x/y", "rel_file_paths": []}
