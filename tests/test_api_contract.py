"""pfcon's wire contract: every error row of pfcon-observed.md that applies, auth, routing,
ordering guards, idempotency and path confinement, against the running fslink service."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests
from pfconclient.client import JobType

from conftest import TEST_SECRET, Service, raw, wait_status
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import (
    BUSYBOX,
    copied_job,
    new_jid,
    plugin_descriptors,
    prefect_runs,
    settled_runs,
    sh_plugin,
    submit_and_wait_started,
)

PLUGIN_REQUIRED = ["jid", "auid", "number_of_workers", "cpu_limit", "memory_limit", "gpu_limit",
                   "image", "entrypoint", "type"]
MISSING = "Missing required parameter in the post body"


@pytest.fixture(scope="module")
def service(fslink_service: Service) -> Service:
    make_fslink_fixture(fslink_service.store_base)
    return fslink_service


@contextmanager
def polling_status(service: Service, path: str) -> Iterator[list[int]]:
    """GET ``path`` over and over in a thread while the block runs; the status codes."""
    answers: list[int] = []
    done = threading.Event()
    session = requests.Session()
    session.headers.update(service.headers())

    def poll() -> None:
        while not done.is_set():
            answers.append(session.get(service.url + path, timeout=60).status_code)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        yield answers
    finally:
        done.set()
        poller.join()


def out_dir() -> str:
    return f"home/alice/feed/out-{uuid.uuid4().hex[:6]}"


# ----- health, auth, routing ---------------------------------------------------------------

def test_health_needs_no_auth(service):
    response = requests.get(service.url + "health/", timeout=10)
    assert response.status_code == 200 and response.json() == {"health": "OK"}


def test_token_is_pfcons_jwt(service):
    token = service.token()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert set(claims) == {"pfcon_user", "exp"} and claims["pfcon_user"] == "pfcon"
    assert abs(claims["exp"] - (time.time() + 172800)) < 60


@pytest.mark.parametrize(
    "kwargs, status, body",
    [
        ({"data": {"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}}, 415, {"message":
          "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."}),
        ({"json": {"pfcon_user": "pfcon", "pfcon_password": "nope"}}, 400,
         {"message": "Unable to log in with provided credentials."}),
        ({"json": {}}, 400, {"message": {
            "pfcon_user": "Missing required parameter in the JSON body or the post body or the query string",
            "pfcon_password": "Missing required parameter in the JSON body or the post body or the query string"}}),
    ],
)
def test_auth_token_errors(service, kwargs, status, body):
    response = requests.post(service.url + "auth-token/", timeout=10, **kwargs)
    assert (response.status_code, response.json()) == (status, body)


def _token(secret: str, expires_in: timedelta) -> str:
    claims = {"pfcon_user": "pfcon", "exp": datetime.now(timezone.utc) + expires_in}
    return jwt.encode(claims, secret, "HS256")


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "Missing authorization header."),
        ("Token x", "Invalid authorization header."),
        ("Bearer xyz", "Invalid authorization token."),
        (f"Bearer {_token('wrong-secret', timedelta(hours=1))}", "Invalid authorization token."),
        (f"Bearer {_token(TEST_SECRET, timedelta(seconds=-5))}", "Expired authorization token."),
    ],
)
def test_auth_failures_are_401(service, header, message):
    headers = {} if header is None else {"Authorization": header}
    for method, path in (("GET", "pluginjobs/"), ("POST", "copyjobs/"), ("GET", "pluginjobs/x/"),
                         ("DELETE", "deletejobs/x/"), ("GET", "pluginjobs/x/file/")):
        response = raw(service, method, path, headers=headers)
        assert (response.status_code, response.json()) == (401, {"message": message})


def test_routing_like_flask(service):
    redirect = raw(service, "GET", "pluginjobs", allow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"].endswith("/api/v1/pluginjobs/")
    unknown = raw(service, "GET", "nothing/here/")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    method_message = {"message": "The method is not allowed for the requested URL."}
    for method, path in (("DELETE", "pluginjobs/"), ("PUT", "pluginjobs/x/"), ("GET", "auth-token/")):
        response = raw(service, method, path, headers={})
        assert (response.status_code, response.json()) == (405, method_message)


# ----- validation --------------------------------------------------------------------------

def test_empty_plugin_post_bundles_every_missing_field(service):
    for kwargs in ({}, {"json": plugin_descriptors("x")}):  # JSON bodies are ignored, as in pfcon
        response = raw(service, "POST", "pluginjobs/", **kwargs)
        assert response.status_code == 400
        assert response.json() == {"message": {field: MISSING for field in PLUGIN_REQUIRED}}


def test_bad_values_are_bundled(service):
    data = {**plugin_descriptors("out"), "jid": new_jid(), "type": "xx", "cpu_limit": "abc"}
    response = raw(service, "POST", "pluginjobs/", data=data)
    assert response.status_code == 400
    assert response.json() == {"message": {
        "cpu_limit": "invalid literal for int() with base 10: 'abc'", "type": "xx is not a valid choice"}}


@pytest.mark.parametrize(
    "path, data, body",
    [
        ("uploadjobs/", {"jid": "j"}, {"message": {"job_output_path": MISSING}}),
        ("copyjobs/", {"jid": "j"}, {"message": {"output_dir": MISSING}}),
        ("pluginjobs/", {**plugin_descriptors("o"), "jid": "j", "env": ["BAD"]},
         {"message": 'env: must be a list of "key=value" strings'}),
        ("pluginjobs/", {**plugin_descriptors("o"), "jid": "j", "number_of_workers": 2},
         {"message": "Compute environment only supports number_of_workers=1, got number_of_workers=2"}),
        ("pluginjobs/", {k: v for k, v in plugin_descriptors("o").items() if k != "output_dir"} | {"jid": "j"},
         {"message": "output_dir: field is required"}),
    ],
)
def test_observed_400s(service, path, data, body):
    response = raw(service, "POST", path, data=data)
    assert (response.status_code, response.json()) == (400, body)


@pytest.mark.parametrize(
    "path, data, field",
    [
        ("copyjobs/", {"input_dirs": ["home/../../etc"], "output_dir": "o"}, "input_dirs"),
        ("copyjobs/", {"input_dirs": ["home/alice"], "output_dir": "../outside"}, "output_dir"),
        ("pluginjobs/", {**plugin_descriptors("home/alice/../../../tmp")}, "output_dir"),
    ],
)
def test_paths_escaping_the_store_are_400(service, path, data, field):
    jid = new_jid()
    response = raw(service, "POST", path, data={**data, "jid": jid})
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}: ")
    assert not (service.store_base / f"key-{jid}").exists()
    assert not prefect_runs(service, f"copy-{jid}")


def test_bad_jids_are_400(service):
    for jid in ("a/b", "..", "-x", "a b"):
        response = raw(service, "POST", "copyjobs/", data={"jid": jid, "output_dir": "o"})
        assert response.status_code == 400 and "jid" in response.json()["message"]


# ----- guards, idempotency, errors ---------------------------------------------------------

def test_plugin_without_copy_is_409(service):
    response = raw(service, "POST", "pluginjobs/", data={**plugin_descriptors(out_dir()), "jid": new_jid()})
    assert (response.status_code, response.json()) == (409, {"message":
        "No copy job found. A copy job must complete successfully before scheduling a plugin job."})


def failed_copy_through_link(service: Service, target: str, output_dir: str) -> tuple[str, dict]:
    """A copy job whose input holds a link to ``target``; its jid and final status."""
    jid = new_jid()
    src = service.store_base / "home/alice/feed" / f"links-{jid}"
    src.mkdir(parents=True)
    (src / "l.chrislink").write_text(target)
    client = service.client()
    client.submit_job(JobType.COPY, jid, {"input_dirs": [src.relative_to(service.store_base).as_posix()],
                                          "output_dir": output_dir})
    return jid, wait_status(client, JobType.COPY, jid)


def test_copy_link_to_output_ancestor_fails_and_guards_the_plugin(service):
    output_dir = "home/alice/feed/out2"
    jid, copy = failed_copy_through_link(service, "home/alice", output_dir)
    assert copy["status"] == "finishedWithError"
    assert "Invalid input path: home/alice" in copy["message"] + copy["logs"]
    response = raw(service, "POST", "pluginjobs/", data={**plugin_descriptors(output_dir), "jid": jid})
    assert (response.status_code, response.json()) == (409, {"message":
        "Copy job has not completed successfully (status: finishedWithError). Run the copy job first."})


def test_chrislink_escaping_the_store_fails_readably(service):
    jid, copy = failed_copy_through_link(service, "../../../../etc", out_dir())
    assert copy["status"] == "finishedWithError"
    assert "etc" in copy["message"] and "leaves the storeBase" in copy["message"]
    assert not any((service.store_base / f"key-{jid}").rglob("passwd"))


def test_copy_without_inputs_gives_empty_incoming(service):
    jid, _ = copied_job_without_inputs(service)
    assert list((service.store_base / f"key-{jid}" / "incoming").iterdir()) == []


def copied_job_without_inputs(service: Service) -> tuple[str, str]:
    jid, output_dir = new_jid(), out_dir()
    client = service.client()
    client.submit_job(JobType.COPY, jid, {"output_dir": output_dir})
    assert wait_status(client, JobType.COPY, jid)["status"] == "finishedSuccessfully"
    return jid, output_dir


def test_running_plugin_repeat_and_delete_guard(service, docker_client):
    jid, output_dir = copied_job(service)
    client = service.client()
    submit_and_wait_started(client, jid, sh_plugin(output_dir, "echo start; sleep 30"))
    container_id = docker_client.api.inspect_container(jid)["Id"]
    repeat = raw(service, "POST", "pluginjobs/", data={**sh_plugin(output_dir, "exit 0"), "jid": jid})
    assert repeat.status_code == 201
    assert repeat.json()["data"] == {}
    assert repeat.json()["compute"]["status"] == "started"
    assert repeat.json()["compute"]["message"] == "running"
    assert docker_client.api.inspect_container(jid)["Id"] == container_id
    delete = raw(service, "POST", "deletejobs/", data={"jid": jid})
    assert (delete.status_code, delete.json()) == (409, {"message":
        "The plugin job is still active (status: started). All jobs must finish before scheduling a delete job."})
    # DELETE stops the running container (status polls meanwhile answer, never 5xx); the run
    # is cancelled and data stays
    with polling_status(service, f"pluginjobs/{jid}/") as answers:
        client.delete_job(JobType.PLUGIN, jid)
    assert answers and set(answers) <= {200, 404}, answers
    assert not docker_client.containers.list(all=True, ignore_removed=True, filters={"name": f"^/{jid}$"})
    assert (service.store_base / f"key-{jid}" / "incoming" / "a.txt").exists()
    (run,) = settled_runs(service, f"plugin-{jid}")
    assert run["state_type"] in ("CANCELLED", "CANCELLING")


def test_simultaneous_identical_posts_run_the_job_once(service):
    jid, output_dir = copied_job(service)
    data = {**sh_plugin(output_dir, 'echo run >> "$2"/runs.txt'), "jid": jid}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: raw(service, "POST", "pluginjobs/", data=data), range(8)))
    assert [answer.status_code for answer in answers] == [201] * 8
    assert wait_status(service.client(), JobType.PLUGIN, jid)["status"] == "finishedSuccessfully"
    assert len(settled_runs(service, f"plugin-{jid}", count=1)) == 1
    assert (service.store_base / output_dir / "runs.txt").read_text() == "run\n"


def test_deleted_job_posted_again_runs_again(service):
    jid, output_dir = copied_job(service)
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo first"))
    assert wait_status(client, JobType.PLUGIN, jid)["logs"] == "first\n"
    client.delete_job(JobType.PLUGIN, jid)
    assert raw(service, "GET", f"pluginjobs/{jid}/").status_code == 404
    again = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo second"))
    assert again["compute"]["status"] == "notStarted"
    second = wait_status(client, JobType.PLUGIN, jid)
    assert (second["status"], second["logs"]) == ("finishedSuccessfully", "second\n")
    assert len(settled_runs(service, f"plugin-{jid}", count=2)) == 2


def test_failed_plugin_is_rescheduled_with_the_new_body(service):
    jid, output_dir = copied_job(service)
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo failing; exit 3"))
    failed = wait_status(client, JobType.PLUGIN, jid)
    assert (failed["status"], failed["message"]) == ("finishedWithError", "exited")
    assert "failing" in failed["logs"]
    retry = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo fixed"))
    assert retry["compute"]["status"] == "notStarted"
    assert "echo fixed" in retry["compute"]["cmd"]
    fixed = wait_status(client, JobType.PLUGIN, jid)
    assert fixed["status"] == "finishedSuccessfully" and fixed["logs"] == "fixed\n"
    # after success a repeat returns the finished job and ignores the new body
    again = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo other", image="other:img"))
    assert again["compute"]["status"] == "finishedSuccessfully"
    assert again["compute"]["image"] == BUSYBOX and "echo fixed" in again["compute"]["cmd"]
    assert len(settled_runs(service, f"plugin-{jid}", count=2)) == 2


def test_gpu_without_runtime_is_a_clear_error_and_no_container(service, docker_client):
    jid, output_dir = copied_job(service)
    client = service.client()
    answer = client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "echo hi", gpu_limit=1))
    assert answer["compute"]["status"] == "notStarted"
    result = wait_status(client, JobType.PLUGIN, jid)
    assert result["status"] == "finishedWithError"
    assert "no GPU runtime" in result["message"]
    assert not docker_client.containers.list(all=True, ignore_removed=True, filters={"name": f"^/{jid}$"})


def test_missing_image_is_a_clear_error(service):
    jid, output_dir = copied_job(service)
    client = service.client()
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, "true", image="local/absent:none"))
    result = wait_status(client, JobType.PLUGIN, jid)
    assert result["status"] == "finishedWithError"
    assert "local/absent:none" in result["message"]


def test_memory_limit_is_enforced(service):
    jid, output_dir = copied_job(service)
    client = service.client()
    hog = "echo hog; x=a; while true; do x=$x$x; done"
    client.submit_job(JobType.PLUGIN, jid, sh_plugin(output_dir, hog, memory_limit=32))
    result = wait_status(client, JobType.PLUGIN, jid, timeout=180)
    assert result["status"] == "finishedWithError"


def test_file_endpoint_errors(service):
    jid = new_jid()
    no_query = raw(service, "GET", f"pluginjobs/{jid}/file/")
    assert (no_query.status_code, no_query.json()) == (400, {"message": "job_output_path: query parameter is required"})
    missing = raw(service, "GET", f"pluginjobs/{jid}/file/", params={"job_output_path": "home/nobody/nothing"})
    assert missing.status_code == 404
    assert missing.json() == {"message": "The requested URL was not found on the server. If you entered "
                                         "the URL manually please check your spelling and try again."}
    (service.store_base / "home/alice/feed/out3").mkdir(parents=True, exist_ok=True)
    slashed = raw(service, "GET", f"pluginjobs/{jid}/file/", params={"job_output_path": "/home/alice/feed/out3/"})
    assert slashed.status_code == 200
    assert slashed.headers["content-disposition"] == f"attachment; filename={jid}.json"
    assert slashed.json() == {"job_output_path": "home/alice/feed/out3", "rel_file_paths": []}
    escape = raw(service, "GET", f"pluginjobs/{jid}/file/", params={"job_output_path": "../../etc"})
    assert escape.status_code == 400


def test_unknown_jobs(service):
    for path in ("pluginjobs", "copyjobs", "uploadjobs", "deletejobs"):
        response = raw(service, "GET", f"{path}/nope/")
        assert response.status_code == 404 and "nope" in response.json()["message"]
        removed = raw(service, "DELETE", f"{path}/nope/")
        assert removed.status_code == 204 and removed.content == b""
        assert removed.headers["content-type"] == "application/json"  # as pfcon 6.0.6 answers
    assert raw(service, "POST", "deletejobs/", data={"jid": "nope"}).json()["compute"]["message"] == "deleteSkipped"
