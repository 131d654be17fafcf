"""Direct access to the test Swift container, to seed inputs and check uploads."""

from __future__ import annotations

from fsspec.implementations.dirfs import DirFileSystem

from conftest import SWIFT_TEST_CONTAINER
from prefect_pfcon.filesystems import SwiftFileSystem


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
