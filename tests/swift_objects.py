"""Direct access to the test Swift container, to seed inputs and check uploads."""

from __future__ import annotations

import http.client
from urllib.parse import quote, urlsplit

from fsspec.implementations.dirfs import DirFileSystem
from swiftclient.client import Connection

from conftest import SWIFT_TEST_CONTAINER
from prefect_pfcon.lib.filesystems import SwiftFileSystem


def swift_container(credentials: dict[str, str]) -> DirFileSystem:
    """The test container as an fsspec filesystem of object names (created if missing)."""
    swift = SwiftFileSystem(
        credentials["SWIFT_AUTH_URL"], credentials["SWIFT_USERNAME"], credentials["SWIFT_KEY"]
    )
    swift.mkdir(SWIFT_TEST_CONTAINER)
    return DirFileSystem(path=SWIFT_TEST_CONTAINER, fs=swift)


def seed(objects: DirFileSystem, files: dict[str, str]) -> None:
    """Write ``{object name: text}`` into the container."""
    for name, content in files.items():
        objects.pipe_file(name, content.encode())


def _raw_request(credentials: dict[str, str], method: str, name: str, body: bytes | None = None) -> int:
    """``method`` on the object ``name`` of the test container, its dots percent-encoded so
    that no HTTP client normalizes ``..`` away (swiftclient's would); the status code."""
    connection = Connection(credentials["SWIFT_AUTH_URL"], credentials["SWIFT_USERNAME"], credentials["SWIFT_KEY"])
    url, token = connection.get_auth()
    parts = urlsplit(url)
    path = f"{parts.path}/{SWIFT_TEST_CONTAINER}/" + quote(name, safe="/").replace(".", "%2E")
    request = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        request.request(method, path, body=body, headers={"X-Auth-Token": token})
        return request.getresponse().status
    finally:
        request.close()


def put_raw(credentials: dict[str, str], name: str, data: bytes) -> None:
    """Write an object whose name may hold ``..``, ``//`` or a leading ``/``, exactly so named."""
    assert _raw_request(credentials, "PUT", name, data) == 201


def delete_raw(credentials: dict[str, str], name: str) -> None:
    """Delete an object written by ``put_raw`` (absent: no error)."""
    assert _raw_request(credentials, "DELETE", name) in (204, 404)
