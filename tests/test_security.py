"""Bad input refused: fuzzing every endpoint (no 5xx), path traversal in every form, size
limits, and no secret in any answer or log line."""

from __future__ import annotations

import string
import uuid

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pfconclient.client import JobType

from conftest import TEST_SECRET, Service, raw, wait_status
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import new_jid, prefect_log_messages, prefect_runs, settled_runs

FIELDS = ["jid", "args", "args_path_flags", "auid", "number_of_workers", "cpu_limit", "memory_limit",
          "gpu_limit", "image", "entrypoint", "type", "env", "input_dirs", "output_dir", "job_output_path"]
JIDS = ["fuzz-a", "fuzz-b", "/fuzz-c", "", "..", "a/b", "x" * 300, "ü", "%2e%2e"]
NASTY = ["..", "../..", "/etc", "/etc/passwd", "a/../../b", "%2e%2e/x", "..%2Fx", "\\..\\x", "a\x00b",
         "~root", "-1", "99999999999999999999999", "ds", "fs", "x=y", " ", "\n", "home/alice/feed/in"]
PATHS = ["health/", "auth-token/", "pluginjobs/", "copyjobs/", "uploadjobs/", "deletejobs/",
         "pluginjobs/{jid}/", "copyjobs/{jid}/", "deletejobs/{jid}/", "pluginjobs/{jid}/file/",
         "pluginjobs/{jid}/file/?job_output_path={value}", "pluginjobs/..%2F..%2Fetc/", "pluginjobs/%2e%2e/file/",
         "pluginjobs", "nothing/", "pluginjobs/{jid}/file/?job_output_path=..%2F..%2F"]


@pytest.fixture(scope="module")
def service(fslink_service: Service) -> Service:
    make_fslink_fixture(fslink_service.store_base)
    return fslink_service


values = st.one_of(st.sampled_from(NASTY), st.text(max_size=40),
                   st.integers(-2**40, 2**40).map(str), st.text(string.printable, max_size=300))
forms = st.dictionaries(st.sampled_from(FIELDS), st.lists(values, max_size=3), max_size=10).flatmap(
    lambda form: st.sampled_from(JIDS).map(lambda jid: {**form, "jid": [jid]} if form else form))


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]), path=st.sampled_from(PATHS),
       jid=st.sampled_from(JIDS), value=values, form=forms,
       auth=st.sampled_from(["valid", "none", "garbage", "Bearer ", "Bearer a.b.c"]),
       body_kind=st.sampled_from(["form", "json", "raw", "multipart"]))
def test_fuzzing_never_gets_a_5xx(service, token, method, path, jid, value, form, auth, body_kind):
    url = service.url + path.format(jid=requests.utils.quote(jid, safe=""), value=requests.utils.quote(value))
    headers = {"valid": {"Authorization": f"Bearer {token}"}, "none": {}}.get(auth, {"Authorization": auth})
    kwargs: dict = {}
    if body_kind == "form":
        kwargs["data"] = form
    elif body_kind == "json":
        kwargs["json"] = {key: value[0] if value else "" for key, value in form.items()}
    elif body_kind == "raw":
        kwargs["data"] = value.encode("utf-8", "surrogatepass")
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    else:
        kwargs["data"] = form
        kwargs["files"] = {"data_file": ("d.zip", value.encode("utf-8", "surrogatepass"))}
    response = requests.request(method, url, headers=headers, timeout=60, allow_redirects=False, **kwargs)
    assert response.status_code < 500, (method, path, jid, form, response.status_code, response.text[:300])


@pytest.fixture(scope="module")
def token(service: Service) -> str:
    return service.token()


@pytest.mark.parametrize("input_dir", [
    "../../etc", "/../etc", "home/../../etc", "home/alice/feed/../../../..", "..", "a/./../../b",
])
def test_traversal_in_input_dirs_is_400_and_nothing_runs(service, input_dir):
    jid = new_jid()
    response = raw(service, "POST", "copyjobs/", data={"jid": jid, "input_dirs": [input_dir], "output_dir": "out"})
    assert response.status_code == 400, response.text
    assert not prefect_runs(service, f"copy-{jid}")


def test_symlinks_and_links_leading_out_are_refused(service):
    store = service.store_base
    tag = uuid.uuid4().hex[:6]
    (store / f"home/evil-{tag}").mkdir(parents=True)
    (store / f"home/evil-{tag}/etc").symlink_to("/etc")  # a symlinked dir inside an input tree
    (store / f"home/evil-{tag}/passwd").symlink_to("/etc/passwd")  # and a symlinked file
    (store / f"home/evil-{tag}/ok.txt").write_text("ok")
    client = service.client()
    jid = new_jid()
    client.submit_job(JobType.COPY, jid,
                      {"input_dirs": [f"home/evil-{tag}"], "output_dir": f"home/evil-{tag}/out"})
    copy = wait_status(client, JobType.COPY, jid)
    assert copy["status"] == "finishedSuccessfully"
    staged = sorted(p.name for p in (store / f"key-{jid}" / "incoming").rglob("*"))
    assert staged == ["ok.txt"]  # neither /etc nor /etc/passwd came in
    direct = raw(service, "POST", "copyjobs/", data={"jid": new_jid(), "input_dirs": [f"home/evil-{tag}/etc"],
                                                      "output_dir": "out"})
    assert direct.status_code == 400  # an input dir that resolves outside the storeBase


def test_encoded_slashes_in_jids_and_paths(service):
    for path in ("pluginjobs/..%2F..%2Fetc/", "pluginjobs/%2e%2e%2f/file/?job_output_path=x",
                 "deletejobs/..%2fkey-x/"):
        response = raw(service, "GET", path)
        assert response.status_code in (400, 404), (path, response.status_code)
    listing = raw(service, "GET", "pluginjobs/j/file/", params={"job_output_path": "../../../etc"})
    assert listing.status_code == 400
    assert listing.json()["message"].startswith("job_output_path: ")


def test_oversized_fields_and_bodies(service):
    field = raw(service, "POST", "copyjobs/", files={"jid": (None, "j"), "output_dir": (None, "x" * (2 * 2**20))})
    assert field.status_code == 400 and "exceeded maximum size" in field.json()["message"]
    body = raw(service, "POST", "copyjobs/", data={"jid": "j", "output_dir": "x" * (17 * 2**20)})
    assert (body.status_code, body.json()) == (413, {"message": "The data value transmitted exceeds the capacity limit."})

    streamed = requests.post(service.url + "copyjobs/", data=(b"a" * 2**20 for _ in range(20)), timeout=60,
                             headers={**service.headers(), "Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 400 and "exceeded maximum size" in streamed.json()["message"]
    many = raw(service, "POST", "copyjobs/", data={f"f{i}": "1" for i in range(1500)})
    assert many.status_code == 400


def test_no_secret_in_answers_or_logs(service):
    jid = new_jid()
    client = service.client()
    client.submit_job(JobType.COPY, jid,
                      {"input_dirs": ["home/alice/feed/in"], "output_dir": "home/alice/feed/out"})
    wait_status(client, JobType.COPY, jid)
    answers = [raw(service, "GET", "pluginjobs/").text, raw(service, "GET", f"copyjobs/{jid}/").text]
    logs = prefect_log_messages(service, settled_runs(service, f"copy-{jid}")[0]["id"])
    for text in [*answers, *logs, *service.output]:
        assert TEST_SECRET not in text and "pfcon1234" not in text
