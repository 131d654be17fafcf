"""The previous API generation (``/api/v1/jobs/``, pfcon ≤ 5.3.1) driven by python-pfconclient
3.3.0's own methods, whole jobs in fslink, swift and zipfile modes through the same flow runs
and containers as the current API; outputs checked on disk and in Swift.

3.3.0 cannot share the venv with 4.0.0 (same package): the test command installs it into
``<venv>/pfconclient-3.3.0`` and each test runs ``legacy_client.py`` with it on PYTHONPATH.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pfconclient.client import JobType

from conftest import Service, _start_replica, _stop, raw, wait_status
from fixtures_tree import FSLINK_FIXTURE, make_fslink_fixture, tree
from object_storage_checks import OBJECTS_SCRIPT, OUTPUTS
from swift_objects import seed, swift_container
from test_fslink_lifecycle import BUSYBOX, COPY_SCRIPT, plugin_descriptors, prefect_runs, settled_runs
from test_security import JIDS, forms, values
from test_zipfile_lifecycle import OBSERVED_ZIP, ZIP_SCRIPT, make_zip, zip_descriptors

LEGACY_CLIENT = Path(sys.prefix) / "pfconclient-3.3.0"
DRIVER = Path(__file__).with_name("legacy_client.py")
LOCAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
LEGACY_PATHS = ["jobs/", "jobs", "jobs/{jid}/", "jobs/{jid}/file/", "jobs/{jid}/file/?job_output_path={value}",
                "jobs/%2e%2e/", "jobs/..%2F..%2Fetc/file/?job_output_path=x"]
CREATED = {"status": "notStarted", "message": "created", "timestamp": "0001-01-01T00:00:00Z", "logs": ""}


def legacy(service: Service, *calls: list) -> list:
    """Run ``calls`` (``[method, *args]``) on a python-pfconclient 3.3.0 ``Client``; their results."""
    if not (LEGACY_CLIENT / "pfconclient").is_dir():
        raise RuntimeError(f"{LEGACY_CLIENT} missing: run the tests with scripts/test.sh, which installs it")
    spec = {"url": service.url, "user": "pfcon", "password": "pfcon1234", "initial_wait": 0.25,
            "calls": list(calls)}
    done = subprocess.run(
        [sys.executable, str(DRIVER)], input=json.dumps(spec), capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(LEGACY_CLIENT)},
    )
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["client"]["version"] == "3.3.0"
    assert output["client"]["file"].startswith(str(LEGACY_CLIENT))
    return output["results"]


def refused(result: dict) -> tuple[int, object]:
    """The status code and JSON message of a request the client saw refused."""
    return result["error"], json.loads(result["message"])["message"]


def legacy_jid() -> str:
    return f"h7-legacy-{uuid.uuid4().hex[:10]}"


def b64(data: bytes | io.BytesIO) -> dict[str, str]:
    return {"base64": base64.b64encode(data.getvalue() if isinstance(data, io.BytesIO) else data).decode()}


def container_names(docker_client, jid: str) -> list:
    return docker_client.containers.list(all=True, ignore_removed=True, filters={"name": f"^/{jid}$"})


def test_fslink_lifecycle(fslink_service: Service, docker_client):
    service, store = fslink_service, fslink_service.store_base
    make_fslink_fixture(store)
    jid, output_dir = legacy_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    descriptors = plugin_descriptors(output_dir)
    info, first, repeat, status, final, listing, deleted, gone = legacy(
        service,
        ["get_server_info"],
        ["submit_job", jid, descriptors],
        ["submit_job", jid, descriptors],
        ["poll_job_status", jid],
        ["get_job_status", jid],
        ["get_job_json_data", jid, output_dir],
        ["delete_job", jid],
        ["get_job_status", jid],
    )
    assert info == {"server_version": "0.1.0", "pfcon_innetwork": True, "storage_env": "fslink",
                    "container_env": "docker", "compute_volume_type": "host"}

    # one POST staged the inputs (a copy flow run, waited for) and started the plugin
    incoming = store / f"key-{jid}" / "incoming"
    assert first["data"] == {"jid": jid, "nfiles": 4, "timestamp": first["data"]["timestamp"], "path": str(incoming)}
    assert LOCAL_TIMESTAMP.fullmatch(first["data"]["timestamp"])
    assert first["compute"] == {
        "jid": jid, "image": BUSYBOX,
        "cmd": f"sh -c '{COPY_SCRIPT}' sh --dir /share/incoming /share/incoming /share/outgoing", **CREATED}
    assert repeat["data"] == {} and repeat["compute"]["jid"] == jid  # the job already there
    assert repeat["compute"]["status"] in ("notStarted", "started", "finishedSuccessfully")
    (copy_run,) = settled_runs(service, f"copy-{jid}")
    assert copy_run["state_type"] == "COMPLETED"
    assert len(settled_runs(service, f"plugin-{jid}", count=1)) == 1

    assert status == "finishedSuccessfully"
    assert final["compute"]["status"] == "finishedSuccessfully" and final["compute"]["logs"] == "start\ndone\n"
    out = store / output_dir
    assert listing["job_output_path"] == output_dir
    assert sorted(listing["rel_file_paths"]) == tree(out) == sorted(
        ["new.txt", "a.txt", "sub/b.txt", "home_bob_uploads_x/x.txt", "sub/SHARED_data/s1.txt"])

    # DELETE removed the key dir (a delete flow run), the container and every step of the job
    assert deleted is None
    assert refused(gone) == (404, f"No plugin job found with jid '{jid}'")
    assert not (store / f"key-{jid}").exists()
    assert (out / "new.txt").read_text() == "new\n"  # outputs stay
    assert not container_names(docker_client, jid)
    (delete_run,) = settled_runs(service, f"delete-{jid}")
    assert delete_run["state_type"] == "COMPLETED"
    for step in ("copy", "plugin", "delete"):
        assert raw(service, "GET", f"{step}jobs/{jid}/").status_code == 404


def test_refusals_change_nothing(fslink_service: Service):
    service, store = fslink_service, fslink_service.store_base
    make_fslink_fixture(store)
    (store / "home/eve/in").mkdir(parents=True, exist_ok=True)
    (store / "home/eve/in/up.chrislink").write_text("home/eve")
    no_inputs, bad_env, bad_link, unknown = legacy_jid(), legacy_jid(), legacy_jid(), legacy_jid()
    missing = plugin_descriptors("home/alice/feed/out")
    del missing["input_dirs"]
    results = legacy(
        service,
        ["submit_job", no_inputs, missing],
        ["submit_job", bad_env, plugin_descriptors("home/alice/feed/out", env=["NOEQUALS"])],
        ["submit_job", bad_link, plugin_descriptors("home/eve/feed/out", input_dirs=["home/eve/in"])],
        ["delete_job", unknown],
    )
    assert refused(results[0]) == (400, "input_dirs: field is required")
    assert refused(results[1]) == (400, 'env: must be a list of "key=value" strings')
    assert refused(results[2]) == (400, "input_dirs: Error copying files from shared filesystem")
    assert results[3]["error"] == 404
    for jid in (no_inputs, bad_env):
        assert not (store / f"key-{jid}").exists()
        assert prefect_runs(service, f"copy-{jid}") == []
    (failed_copy,) = settled_runs(service, f"copy-{bad_link}")
    assert failed_copy["state_type"] == "FAILED"
    assert prefect_runs(service, f"plugin-{bad_link}") == []  # no plugin after a failed copy


def test_args_may_be_left_out(fslink_service: Service):
    """3.3.0 sends no ``args`` key for an empty list; such a plugin runs."""
    make_fslink_fixture(fslink_service.store_base)
    jid = legacy_jid()
    descriptors = plugin_descriptors(f"home/alice/feed/out-{uuid.uuid4().hex[:6]}", args=[], args_path_flags=[],
                                     entrypoint=["sh", "-c", 'ls "$1"', "sh"])
    submitted, status, final, _ = legacy(fslink_service, ["submit_job", jid, descriptors], ["poll_job_status", jid],
                                         ["get_job_status", jid], ["delete_job", jid])
    assert submitted["compute"]["cmd"] == """sh -c 'ls "$1"' sh /share/incoming /share/outgoing"""
    assert status == "finishedSuccessfully"
    assert sorted(final["compute"]["logs"].split()) == ["a.txt", "home_bob_uploads_x", "sub"]


def test_delete_stops_a_running_job(fslink_service: Service, docker_client):
    service, store = fslink_service, fslink_service.store_base
    make_fslink_fixture(store)
    jid = legacy_jid()
    descriptors = plugin_descriptors(f"home/alice/feed/out-{uuid.uuid4().hex[:6]}",
                                     entrypoint=["sh", "-c", "sleep 300", "sh"])
    legacy(service, ["submit_job", jid, descriptors])
    deadline = time.monotonic() + 60
    while raw(service, "GET", f"jobs/{jid}/").json()["compute"]["status"] != "started":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    started = time.monotonic()
    (deleted,) = legacy(service, ["delete_job", jid])
    assert deleted is None and time.monotonic() - started < 60
    assert not container_names(docker_client, jid)
    assert not (store / f"key-{jid}").exists()
    assert settled_runs(service, f"plugin-{jid}")[0]["state_type"] == "CANCELLED"


@pytest.fixture(scope="module")
def impatient_service(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    """fslink with legacy requests waiting at most 10 ms for a step."""
    service = _start_replica(session_tmp, fslink_service, "fslink", {"PFCON_LEGACY_WAIT_SECONDS": "0.01"},
                             name="h7-impatient")
    yield service
    _stop(service)


def test_steps_outlasting_the_deadline_are_answered_503_and_finish(impatient_service: Service):
    """A step still running at the deadline: 503, it carries on, and the request repeated
    once it ended goes on from there (nothing is run twice)."""
    service = impatient_service
    make_fslink_fixture(service.store_base)
    jid = legacy_jid()
    client = service.client()
    descriptors = plugin_descriptors(f"home/alice/feed/out-{uuid.uuid4().hex[:6]}")
    (early,) = legacy(service, ["submit_job", jid, descriptors])
    assert refused(early) == (503, "The copy job did not end within 0.01 s; try again.")
    assert wait_status(client, JobType.COPY, jid)["status"] == "finishedSuccessfully"
    submitted, status, early_delete = legacy(service, ["submit_job", jid, descriptors], ["poll_job_status", jid],
                                             ["delete_job", jid])
    assert submitted["data"]["nfiles"] == 4 and submitted["compute"]["status"] == "notStarted"
    assert status == "finishedSuccessfully"
    assert refused(early_delete) == (503, "The delete job did not end within 0.01 s; try again.")
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    assert not (service.store_base / f"key-{jid}").exists()
    (deleted,) = legacy(service, ["delete_job", jid])
    assert deleted is None
    assert raw(service, "GET", f"jobs/{jid}/").status_code == 404
    for step in ("copy", "plugin", "delete"):
        assert len(settled_runs(service, f"{step}-{jid}", count=1)) == 1


@pytest.fixture(scope="module")
def objects(swift_credentials):
    container = swift_container(swift_credentials)
    seed(container, FSLINK_FIXTURE)
    return container


def test_swift_lifecycle(swift_service: Service, objects):
    service, store = swift_service, swift_service.store_base
    jid, output_dir = legacy_jid(), f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"
    descriptors = plugin_descriptors(output_dir, entrypoint=["sh", "-c", OBJECTS_SCRIPT, "sh"])
    submitted, status, listing, again, archive, deleted, missing = legacy(
        service,
        ["submit_job", jid, descriptors],
        ["poll_job_status", jid],
        ["get_job_json_data", jid, output_dir],
        ["get_job_json_data", jid, output_dir],
        ["get_job_zip_data", jid],
        ["delete_job", jid],
        ["submit_job", legacy_jid(), plugin_descriptors("home/nobody/out", input_dirs=["home/nobody/nothing"])],
    )
    assert submitted["data"]["nfiles"] == 4
    assert submitted["data"]["path"] == str(store / f"key-{jid}" / "incoming")
    assert status == "finishedSuccessfully"

    # the file GET uploaded the outputs (an upload flow run, waited for), then listed them
    assert listing == again == {"job_output_path": output_dir, "rel_file_paths": listing["rel_file_paths"]}
    assert sorted(listing["rel_file_paths"]) == OUTPUTS
    assert sorted(objects.find(output_dir)) == [f"{output_dir}/{rel}" for rel in OUTPUTS]
    assert objects.cat_file(f"{output_dir}/new.txt") == b"new\n"
    assert len(settled_runs(service, f"upload-{jid}", count=1)) == 1  # the second GET uploaded nothing
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(archive["base64"]))).namelist()
    assert sorted(names) == OUTPUTS

    assert deleted is None
    assert not (store / f"key-{jid}").exists()
    assert objects.exists(f"{output_dir}/new.txt")
    assert refused(missing) == (400, "input_dirs: Error fetching files from swift")


def test_zipfile_lifecycle(zipfile_service: Service, session_tmp: Path):
    service, store = zipfile_service, zipfile_service.store_base
    local = session_tmp / f"h7-legacy-local-{uuid.uuid4().hex[:6]}"
    for rel, content in OBSERVED_ZIP.items():
        (local / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / "in" / rel).write_text(content)
    jid, run_jid = legacy_jid(), legacy_jid()
    info, submitted, status, archive, deleted, ran, gone, bad = legacy(
        service,
        ["get_server_info"],
        ["submit_job", jid, zip_descriptors(), b64(make_zip(OBSERVED_ZIP))],
        ["poll_job_status", jid],
        ["get_job_zip_data", jid],
        ["delete_job", jid],
        ["run_job", run_jid, zip_descriptors(), str(local / "in"), str(local / "out")],
        ["get_job_status", run_jid],
        ["submit_job", legacy_jid(), zip_descriptors(), b64(b"not a zip")],
    )
    assert info == {"server_version": "0.1.0", "pfcon_innetwork": False, "storage_env": "zipfile",
                    "container_env": "docker", "compute_volume_type": "host"}
    incoming = store / f"key-{jid}" / "incoming"
    assert submitted["data"] == {"jid": jid, "nfiles": 3, "timestamp": submitted["data"]["timestamp"],
                                 "path": str(incoming)}
    assert submitted["compute"]["cmd"] == f"sh -c '{ZIP_SCRIPT}' sh --dir /share/incoming /share/incoming /share/outgoing"
    assert status == "finishedSuccessfully"
    outputs = ["a.txt", "deep/o.txt", "home_bob_uploads_x/x.txt", "sub/b.txt"]
    assert sorted(zipfile.ZipFile(io.BytesIO(base64.b64decode(archive["base64"]))).namelist()) == outputs
    assert deleted is None and not (store / f"key-{jid}").exists()

    # run_job: zip the local dir, submit, poll, unpack the outputs locally, delete
    assert ran == "finishedSuccessfully"
    assert tree(local / "out") == outputs
    assert (local / "out" / "deep" / "o.txt").read_text() == "o\n"
    assert refused(gone)[0] == 404 and not (store / f"key-{run_jid}").exists()
    assert refused(bad) == (400, "data_file: Bad zip file")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]), path=st.sampled_from(LEGACY_PATHS),
       jid=st.sampled_from(JIDS), value=values, form=forms, multipart=st.booleans(),
       auth=st.sampled_from(["valid", "none", "Bearer a.b.c"]))
def test_fuzzing_never_gets_a_5xx(fslink_service: Service, method, path, jid, value, form, multipart, auth):
    make_fslink_fixture(fslink_service.store_base)
    url = fslink_service.url + path.format(jid=requests.utils.quote(jid, safe=""), value=requests.utils.quote(value))
    headers = {"valid": fslink_service.headers(), "none": {}}.get(auth, {"Authorization": auth})
    files = {"data_file": ("d.zip", value.encode("utf-8", "surrogatepass"))} if multipart else None
    response = requests.request(method, url, headers=headers, data=form, files=files, timeout=120,
                                allow_redirects=False)
    assert response.status_code < 500, (method, path, jid, form, response.status_code, response.text[:300])
    if auth != "valid":
        assert response.status_code in (401, 404, 405, 308)
