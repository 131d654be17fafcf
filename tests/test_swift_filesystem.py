"""The fsspec filesystem over swiftclient, against the real Swift."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from prefect_pfcon.lib.filesystems import SwiftError, SwiftFileSystem, readable_errors
from prefect_pfcon.lib.transfer import download, upload
from swift_objects import swift_container


@pytest.fixture
def objects(swift_credentials):
    container = swift_container(swift_credentials)
    prefix = f"fs-{uuid.uuid4().hex[:8]}"
    yield container, prefix
    for name in container.find(prefix):
        container.rm_file(name)


def test_listing_info_and_missing_paths(objects):
    fs, prefix = objects
    fs.pipe_file(f"{prefix}/a/b/x.txt", b"x")
    fs.pipe_file(f"{prefix}/a/y.txt", b"yy")
    assert sorted(fs.ls(f"{prefix}/a", detail=False)) == [f"{prefix}/a/b", f"{prefix}/a/y.txt"]
    assert fs.find(f"{prefix}/a") == [f"{prefix}/a/b/x.txt", f"{prefix}/a/y.txt"]
    assert fs.find(f"{prefix}/a/y.txt") == [f"{prefix}/a/y.txt"]
    assert fs.find(f"{prefix}/a/b/x") == []  # a prefix of a name is not a directory
    assert fs.info(f"{prefix}/a")["type"] == "directory"
    assert fs.info(f"{prefix}/a/y.txt")["size"] == 2
    assert not fs.exists(f"{prefix}/nothing")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{prefix}/nothing")


def test_streamed_open_read_write_and_ranges(objects):
    fs, prefix = objects
    payload = os.urandom(3 * 1024 * 1024 + 5)
    with fs.open(f"{prefix}/big.bin", "wb") as target:
        for start in range(0, len(payload), 100_000):
            target.write(payload[start : start + 100_000])
    assert fs.cat_file(f"{prefix}/big.bin", 10, 20) == payload[10:20]
    with fs.open(f"{prefix}/big.bin", "rb") as source:
        source.seek(len(payload) - 7)
        assert source.read() == payload[-7:]


def test_parallel_upload_and_download(objects, tmp_path: Path):
    fs, prefix = objects
    sources = []
    for index in range(40):
        path = tmp_path / "up" / f"d{index % 4}" / f"f{index}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(index))
        sources.append(path)
    assert upload(fs, [(str(path), f"{prefix}/{path.parent.name}/{path.name}") for path in sources], 8) == 40
    names = fs.find(prefix)
    assert len(names) == 40
    assert download(fs, [(name, str(tmp_path / "down" / name)) for name in names], 8) == 40
    assert (tmp_path / "down" / prefix / "d3" / "f7.txt").read_text() == "7"


def test_errors_are_readable_and_never_show_the_key(swift_credentials):
    wrong = SwiftFileSystem(swift_credentials["SWIFT_AUTH_URL"], swift_credentials["SWIFT_USERNAME"], "secret-x")
    with pytest.raises(SwiftError) as refused, readable_errors():
        wrong.exists("pfcon-tests/anything")
    assert str(refused.value) == "Swift: Auth GET failed (401 Unauthorized)"
    assert "secret-x" not in str(refused.value)
