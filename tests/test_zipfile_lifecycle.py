"""Complete zipfile (out-of-network) lifecycles over HTTP with python-pfconclient, and every
way a client's zip can be bad: refused with a 400, nothing written outside the key dir."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest
import requests
from pfconclient.client import JobType

from conftest import UPLOAD_LIMIT_MB, ZIP_LIMIT_MB, Service, raw, wait_status
from fixtures_tree import tree
from test_fslink_lifecycle import new_jid, plugin_descriptors

# $3=/share/incoming (ds) $4=/share/outgoing; the plugin also leaves a link file and a symlink
ZIP_SCRIPT = (
    'cp -r "$3"/. "$4"/; mkdir "$4"/deep; echo o > "$4"/deep/o.txt; '
    'echo home/bob > "$4"/x.chrislink; ln -s /etc/hostname "$4"/sym; echo done'
)
OBSERVED_ZIP = {  # pfcon-observed.md's zipfile input
    "a.txt": "a",
    "sub/b.txt": "b",
    "mylink.chrislink": "home/bob/uploads/x",
    "home/bob/uploads/x/x.txt": "x",
}


def make_zip(entries: dict[str, str | bytes], **info_overrides) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            for key, value in info_overrides.get(name, {}).items():
                setattr(info, key, value)
            archive.writestr(info, content)
    buffer.seek(0)
    return buffer


def zip_descriptors(**overrides) -> dict:
    descriptors = plugin_descriptors(None, **{"entrypoint": ["sh", "-c", ZIP_SCRIPT, "sh"], **overrides})
    del descriptors["input_dirs"], descriptors["output_dir"]
    return descriptors


def post_zip(service: Service, jid: str, archive: io.BytesIO | bytes):
    return raw(service, "POST", "pluginjobs/", data={"jid": jid, **zip_descriptors()},
               files={"data_file": ("data.zip", archive)})


def test_server_info(zipfile_service: Service):
    info = zipfile_service.client().get_server_info()
    assert {key: info[key] for key in ("pfcon_innetwork", "storage_env", "requires_copy_job",
                                       "requires_upload_job")} == {
        "pfcon_innetwork": False, "storage_env": "zipfile", "requires_copy_job": False,
        "requires_upload_job": False}


def test_full_zipfile_lifecycle(zipfile_service: Service):
    service, store = zipfile_service, zipfile_service.store_base
    client = service.client()
    jid = new_jid()

    copy = client.submit_job(JobType.COPY, jid, {"input_dirs": [], "output_dir": "x"})
    assert copy["compute"]["message"] == "copySkipped"

    answer = client.submit_job(JobType.PLUGIN, jid, zip_descriptors(), make_zip(OBSERVED_ZIP))
    incoming = store / f"key-{jid}" / "incoming"
    assert answer["data"] == {"jid": jid, "nfiles": 3, "timestamp": answer["data"]["timestamp"],
                              "path": str(incoming)}
    assert answer["compute"]["status"] == "notStarted"
    assert answer["compute"]["cmd"] == f"sh -c '{ZIP_SCRIPT}' sh --dir /share/incoming /share/incoming /share/outgoing"
    assert tree(incoming) == ["a.txt", "home_bob_uploads_x/x.txt", "sub/b.txt"]

    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    assert plugin["logs"] == "done\n"

    response = raw(service, "GET", f"pluginjobs/{jid}/file/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f"attachment; filename={jid}.zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["a.txt", "deep/o.txt", "home_bob_uploads_x/x.txt", "sub/b.txt"]
    assert archive.read("deep/o.txt") == b"o\n"
    assert archive.testzip() is None
    again = zipfile.ZipFile(io.BytesIO(client.get_plugin_job_zip_data(jid)))  # as pfconclient reads it
    assert sorted(again.namelist()) == sorted(archive.namelist())

    upload = client.submit_job(JobType.UPLOAD, jid, {"job_output_path": "x"})
    assert upload["compute"]["message"] == "uploadSkipped"
    client.submit_job(JobType.DELETE, jid, {})
    assert wait_status(client, JobType.DELETE, jid)["status"] == "finishedSuccessfully"
    assert not (store / f"key-{jid}").exists()
    for job_type in (JobType.PLUGIN, JobType.DELETE):
        client.delete_job(job_type, jid)
    assert raw(service, "GET", f"pluginjobs/{jid}/file/").status_code == 404


def test_outputs_stream_as_a_zip(zipfile_service: Service):
    """A 30 MB output comes back intact (the zip is produced in chunks, not in memory)."""
    client = zipfile_service.client()
    jid = new_jid()
    script = 'head -c 31457280 /dev/urandom > "$4"/big.bin; md5sum "$4"/big.bin | cut -c1-32'
    client.submit_job(JobType.PLUGIN, jid, zip_descriptors(entrypoint=["sh", "-c", script, "sh"]),
                      make_zip({"in.txt": "1"}))
    plugin = wait_status(client, JobType.PLUGIN, jid)
    assert plugin["status"] == "finishedSuccessfully", plugin
    archive = zipfile.ZipFile(io.BytesIO(client.get_plugin_job_zip_data(jid)))
    assert hashlib.md5(archive.read("big.bin")).hexdigest() == plugin["logs"].strip()


def test_missing_data_file_is_400(zipfile_service: Service):
    response = raw(zipfile_service, "POST", "pluginjobs/", data={"jid": new_jid(), **zip_descriptors()})
    assert response.status_code == 400
    assert response.json() == {
        "message": "The browser (or proxy) sent a request that this server could not understand."}


def _bad_zip_cases() -> list:
    symlink_mode = (stat.S_IFLNK | 0o777) << 16
    return [
        pytest.param(b"this is not a zip", "data_file: Bad zip file", id="not-a-zip"),
        pytest.param(make_zip({"../../x": "evil"}), "data_file: unsafe entry name '../../x'", id="zip-slip"),
        pytest.param(make_zip({"/etc/evil": "evil"}), "data_file: unsafe entry name '/etc/evil'", id="absolute"),
        pytest.param(make_zip({"a.txt": "a", "link": "/etc/passwd"}, link={"external_attr": symlink_mode}),
                     "data_file: entry 'link' is a symbolic link", id="symlink"),
        pytest.param(make_zip({"zeros.bin": b"\0" * (ZIP_LIMIT_MB + 1) * 2**20}),
                     f"data_file: unpacks to {(ZIP_LIMIT_MB + 1) * 2**20} bytes, more than the "
                     f"{ZIP_LIMIT_MB * 2**20} allowed", id="bomb"),
    ]


@pytest.mark.parametrize("archive, message", _bad_zip_cases())
def test_bad_zips_are_400_and_write_nothing(zipfile_service: Service, archive, message):
    store = zipfile_service.store_base
    jid = new_jid()
    response = post_zip(zipfile_service, jid, archive)
    assert (response.status_code, response.json()) == (400, {"message": message})
    assert tree(store / f"key-{jid}") == []  # at most the empty key dir pfcon leaves behind
    assert not (store / "x").exists() and not Path("/etc/evil").exists()
    assert not list(store.parent.rglob("evil")) and not list(store.rglob("zeros.bin"))
    assert raw(zipfile_service, "GET", f"pluginjobs/{jid}/").status_code == 404  # nothing scheduled


def test_uploads_over_the_limit_are_413(zipfile_service: Service):
    big = b"\0" * (UPLOAD_LIMIT_MB + 5) * 2**20
    declared = post_zip(zipfile_service, new_jid(), big)
    assert (declared.status_code, declared.json()) == (
        413, {"message": "The data value transmitted exceeds the capacity limit."})
    jid = new_jid()
    boundary = "pfcontest"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"jid\"\r\n\r\n{jid}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"data_file\"; filename=\"d.zip\"\r\n"
            "Content-Type: application/zip\r\n\r\n").encode()

    def body():  # chunked, no Content-Length: counted as it streams in
        yield head
        for _ in range(UPLOAD_LIMIT_MB + 5):
            yield b"\0" * 2**20

    streamed = requests.post(zipfile_service.url + "pluginjobs/", data=body(), timeout=120, headers={
        **zipfile_service.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.status_code == 413
    assert not (zipfile_service.store_base / f"key-{jid}").exists()
