"""Bad input gets a clear 4xx, never a stuck job or a 500: parameters Prefect would refuse,
jids no backend can name, trees deeper than Python's recursion limit, output names that are
not UTF-8, deeply nested JSON, listings outside a job's own output dir, half-sent requests
and password guessing; all against the real service."""

from __future__ import annotations

import io
import socket
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pfconclient.client import JobType

from prefect_pfcon.lib.trees import remove_tree

from conftest import Service, _start_replica, _stop, raw, wait_status
from fixtures_tree import make_fslink_fixture
from test_fslink_lifecycle import copied_job, prefect_log_messages, prefect_runs, settled_runs, sh_plugin
from test_zipfile_lifecycle import make_zip, zip_descriptors

TOO_LARGE = {"message": "The data value transmitted exceeds the capacity limit."}
HEADER_TIMEOUT = 2
LOGIN_WINDOW = 3
DEPTH = 1100
DEEP = "/".join(["d"] * DEPTH)  # 2,199 characters: deep, yet well within PATH_MAX
MAKE_DEEP = f'p=d; i=1; while [ $i -lt {DEPTH} ]; do p=$p/d; i=$((i+1)); done; mkdir -p "$2/$p"; echo leaf > "$2/$p/leaf.txt"'


def jid() -> str:
    return f"h4-{uuid.uuid4().hex[:12]}"


def oversize_input_dirs() -> list[str]:
    """700 storage paths of 803 characters: about 560 kB of parameters, over Prefect's 512 KiB."""
    return ["/".join([f"{i:03d}" + "a" * 197] * 4) for i in range(700)]


@pytest.fixture(scope="module")
def service(fslink_service: Service) -> Service:
    make_fslink_fixture(fslink_service.store_base)
    return fslink_service


@pytest.fixture(scope="module")
def strict(session_tmp: Path, fslink_service: Service) -> Iterator[Service]:
    """A replica on the shared Prefect server with short login and header windows."""
    env = {"PFCON_LOGIN_WINDOW_SECONDS": str(LOGIN_WINDOW), "PFCON_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}
    replica = _start_replica(session_tmp, fslink_service, "fslink", env, name="h4-strict")
    yield replica
    _stop(replica)


# ----- parameters Prefect would refuse --------------------------------------------------------

def test_oversize_parameters_are_413_and_nothing_is_accepted(service):
    job = jid()
    response = raw(service, "POST", "copyjobs/",
                   data={"jid": job, "input_dirs": oversize_input_dirs(), "output_dir": f"home/alice/{job}"})
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert raw(service, "GET", f"copyjobs/{job}/").status_code == 404
    assert not prefect_runs(service, f"copy-{job}")
    assert not (service.store_base / f"key-{job}").exists()


# ----- jids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["h4-" + "x" * 61, "h4-ü", "h4-\u2603", "h4-" + "x" * 249])
def test_jids_no_backend_can_name_are_400(service, bad):
    response = raw(service, "POST", "copyjobs/",
                   data={"jid": bad, "input_dirs": ["home/alice/feed/in"], "output_dir": "home/alice/h4-x"})
    assert response.status_code == 400, response.text
    assert list(response.json()["message"]) == ["jid"]
    assert "not a valid job id" in response.json()["message"]["jid"]


def test_a_63_character_jid_is_fine(service):
    job = ("h4-" + uuid.uuid4().hex * 2)[:63]
    assert len(job) == 63
    response = raw(service, "POST", "copyjobs/",
                   data={"jid": job, "input_dirs": ["home/alice/feed/in"], "output_dir": f"home/alice/{job}"})
    assert response.status_code == 201, response.text
    assert wait_status(service.client(), JobType.COPY, job)["status"] == "finishedSuccessfully"


@pytest.mark.parametrize("bad", ["h4-" + "x" * 249, "h4-\u2603", "h4-ü", "h4 x"])
def test_routes_with_a_jid_that_can_never_be_valid_answer_as_unknown(service, bad):
    quoted = requests.utils.quote(bad, safe="")
    for path in (f"pluginjobs/{quoted}/", f"copyjobs/{quoted}/", f"pluginjobs/{quoted}/file/",
                 f"pluginjobs/{quoted}/file/?job_output_path=home/alice"):
        assert raw(service, "GET", path).status_code == 404, path
    for step in ("pluginjobs", "copyjobs", "uploadjobs", "deletejobs"):
        assert raw(service, "DELETE", f"{step}/{quoted}/").status_code == 204


# ----- trees and names plugins make ---------------------------------------------------------------

def deep_path(root: Path) -> Path:
    return root.joinpath(*DEEP.split("/"), "leaf.txt")


@pytest.fixture
def deep_trees() -> Iterator[list[Path]]:
    """Dirs holding deep trees, removed after the test (``Path.rglob`` in other tests
    cannot walk them)."""
    roots: list[Path] = []
    yield roots
    for root in roots:
        remove_tree(root, ignore_errors=True)


def assert_delete_step_removes_key_dir(service: Service, job: str) -> None:
    client = service.client()
    client.submit_job(JobType.DELETE, job, {})
    assert wait_status(client, JobType.DELETE, job)["status"] == "finishedSuccessfully"
    assert not (service.store_base / f"key-{job}").exists()


def test_a_deep_output_tree_lists_copies_and_is_removed(service, deep_trees):
    client = service.client()
    job, output_dir = copied_job(service)
    deep_trees.append(service.store_base / output_dir)
    client.submit_job(JobType.PLUGIN, job, sh_plugin(output_dir, MAKE_DEEP + "; echo top > \"$2\"/top.txt"))
    assert wait_status(client, JobType.PLUGIN, job)["status"] == "finishedSuccessfully"
    listing = client.get_plugin_job_json_data(job, output_dir)["rel_file_paths"]
    assert sorted(listing) == sorted(["top.txt", f"{DEEP}/leaf.txt"])

    later = jid()  # a later job takes the deep output as its input
    deep_trees.append(service.store_base / f"key-{later}")
    client.submit_job(JobType.COPY, later, {"input_dirs": [output_dir], "output_dir": f"home/alice/{later}"})
    assert wait_status(client, JobType.COPY, later)["status"] == "finishedSuccessfully"
    assert deep_path(service.store_base / f"key-{later}" / "incoming").read_text() == "leaf\n"
    assert_delete_step_removes_key_dir(service, later)


def test_a_deep_output_tree_zips_and_is_removed(zipfile_service, deep_trees):
    job = jid()
    deep_trees.append(zipfile_service.store_base / f"key-{job}")
    descriptors = zip_descriptors(entrypoint=["sh", "-c", MAKE_DEEP.replace("$2", "$4"), "sh"])
    response = raw(zipfile_service, "POST", "pluginjobs/", data={"jid": job, **descriptors},
                   files={"data_file": ("data.zip", make_zip({"a.txt": "a"}))})
    assert response.status_code == 201, response.text
    client = zipfile_service.client()
    assert wait_status(client, JobType.PLUGIN, job)["status"] == "finishedSuccessfully"
    archive = raw(zipfile_service, "GET", f"pluginjobs/{job}/file/")
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as outputs:
        assert outputs.namelist() == [f"{DEEP}/leaf.txt"]
        assert outputs.read(f"{DEEP}/leaf.txt") == b"leaf\n"
    assert_delete_step_removes_key_dir(zipfile_service, job)


def test_a_zip_with_only_a_deep_entry_unpacks(zipfile_service, deep_trees):
    job = jid()
    deep_trees.append(zipfile_service.store_base / f"key-{job}")
    response = raw(zipfile_service, "POST", "pluginjobs/",
                   data={"jid": job, **zip_descriptors(entrypoint=["sh", "-c", "true", "sh"])},
                   files={"data_file": ("data.zip", make_zip({f"{DEEP}/leaf.txt": "leaf"}))})
    assert response.status_code == 201, response.text
    assert deep_path(zipfile_service.store_base / f"key-{job}" / "incoming").read_text() == "leaf"


def test_output_names_that_are_not_utf8_are_skipped_with_a_warning(service):
    client = service.client()
    job, output_dir = copied_job(service)
    script = 'echo ok > "$2"/ok.txt; echo bad > "$2/$(printf "bad\\377.txt")"'
    client.submit_job(JobType.PLUGIN, job, sh_plugin(output_dir, script))
    assert wait_status(client, JobType.PLUGIN, job)["status"] == "finishedSuccessfully"
    assert (service.store_base / output_dir).joinpath(b"bad\xff.txt".decode("utf-8", "surrogateescape")).is_file()
    assert client.get_plugin_job_json_data(job, output_dir)["rel_file_paths"] == ["ok.txt"]
    warning = "Skipping output b'bad\\xff.txt': its name is not valid UTF-8"
    deadline = time.monotonic() + 30  # Prefect receives log records in batches
    while warning not in prefect_log_messages(service, settled_runs(service, f"plugin-{job}")[0]["id"]):
        assert time.monotonic() < deadline
        time.sleep(0.5)


# ----- listings and .chrislink files --------------------------------------------------------------

def test_listing_deletes_links_only_in_the_jobs_own_output_dir(service):
    client, store = service.client(), service.store_base
    job, output_dir = copied_job(service)
    client.submit_job(JobType.PLUGIN, job, sh_plugin(output_dir, 'echo home/bob > "$2"/own.chrislink; echo o > "$2"/o.txt'))
    assert wait_status(client, JobType.PLUGIN, job)["status"] == "finishedSuccessfully"
    other = f"home/alice/other-{job}"
    (store / other).mkdir(parents=True)
    (store / other / "keep.chrislink").write_text("home/bob")
    (store / other / "f.txt").write_text("f")

    for path in (other, "/"):
        answer = raw(service, "GET", f"pluginjobs/{job}/file/", params={"job_output_path": path})
        assert answer.status_code == 200, answer.text
        assert not any(name.endswith(".chrislink") for name in answer.json()["rel_file_paths"])
    assert (store / other / "keep.chrislink").is_file()
    assert (store / "home/alice/feed/in/mylink.chrislink").is_file()
    assert (store / output_dir / "own.chrislink").is_file()  # listed from "/" only: kept
    assert client.get_plugin_job_json_data(job, output_dir)["rel_file_paths"] == ["o.txt"]
    assert not (store / output_dir / "own.chrislink").exists()  # its own output dir: removed, as pfcon


# ----- auth-token/ ----------------------------------------------------------------------------------

def test_deeply_nested_json_is_400(service):
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        response = requests.post(service.url + "auth-token/", data=body, timeout=30,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("Failed to decode JSON object: ")


def login(service: Service, password: str) -> requests.Response:
    return requests.post(service.url + "auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": password},
                         timeout=30)


def test_password_guessing_is_limited(strict):
    assert login(strict, "pfcon1234").status_code == 200  # successes do not count
    for _ in range(10):
        assert login(strict, "guess").status_code == 400
    blocked = login(strict, "guess")
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= LOGIN_WINDOW
    assert set(blocked.json()) == {"message"} and "Too many failed logins" in blocked.json()["message"]
    assert login(strict, "pfcon1234").status_code == 429  # not even the right password, meanwhile
    time.sleep(int(blocked.headers["Retry-After"]) + 0.5)
    assert login(strict, "pfcon1234").status_code == 200


# ----- half-sent requests -----------------------------------------------------------------------

def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (what it sends meanwhile is read)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    return True


def health_answer(sock: socket.socket) -> bytes:
    """The whole answer to a health GET sent on ``sock``."""
    answer = b""
    while not answer.endswith(b'{"health":"OK"}'):
        chunk = sock.recv(65536)
        assert chunk, answer
        answer += chunk
    return answer


def test_half_sent_requests_are_closed_after_the_header_timeout(strict):
    port = int(strict.url.split(":")[2].split("/")[0])
    half = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    for sock in half:
        sock.sendall(b"GET /api/v1/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    started = time.monotonic()
    assert all(closed_within(sock, HEADER_TIMEOUT + 3) for sock in half)
    assert time.monotonic() - started < HEADER_TIMEOUT + 3

    with socket.create_connection(("127.0.0.1", port)) as kept:  # a kept-alive connection...
        kept.sendall(b"GET /api/v1/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert health_answer(kept).startswith(b"HTTP/1.1 200 ")
        time.sleep(HEADER_TIMEOUT + 1)  # idle longer than the header timeout: still open
        kept.sendall(b"GET /api/v1/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert health_answer(kept).startswith(b"HTTP/1.1 200 ")
        kept.sendall(b"GET /api/v1/health/ HTTP/1.1\r\n")  # ...whose next request stalls
        started = time.monotonic()
        assert closed_within(kept, HEADER_TIMEOUT + 3)
        assert HEADER_TIMEOUT - 0.5 < time.monotonic() - started < HEADER_TIMEOUT + 3
    for sock in half:
        sock.close()
