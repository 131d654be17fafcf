"""Unpacking client zips safely and producing output zips in chunks."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from fixtures_tree import tree
from prefect_pfcon.lib.archives import BadArchive, iter_zip, unpack_zip
from test_zipfile_lifecycle import make_zip


def test_unpack_counts_files_minus_links(tmp_path: Path):
    archive = make_zip({"dir/": "", "a.txt": "a", "dir/l.chrislink": "x/y", "dir/b.txt": "b"})
    assert unpack_zip(archive, tmp_path, 2**20) == 2
    assert tree(tmp_path) == ["a.txt", "dir/b.txt", "dir/l.chrislink"]


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/abs", "C:/win", "a\\..\\x"])
def test_unsafe_names_write_nothing(tmp_path: Path, name: str):
    target = tmp_path / "in" / "deep"
    target.mkdir(parents=True)
    with pytest.raises(BadArchive):
        unpack_zip(make_zip({"ok.txt": "fine", name: "evil"}), target, 2**20)
    assert tree(tmp_path) == []


def test_entries_that_clash_are_refused(tmp_path: Path):
    with pytest.raises(BadArchive, match="clashes"):
        unpack_zip(make_zip({"a": "file", "a/b": "under a file"}), tmp_path, 2**20)


def test_size_limit_counts_declared_sizes(tmp_path: Path):
    archive = make_zip({"one": b"\0" * 600_000, "two": b"\0" * 600_000})
    with pytest.raises(BadArchive, match="more than the 1000000 allowed"):
        unpack_zip(archive, tmp_path, 1_000_000)
    assert tree(tmp_path) == []


def test_output_zip_is_produced_in_chunks(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "big.bin").write_bytes(bytes(range(256)) * 20_000)  # 5 MB
    (tmp_path / "small.txt").write_text("s")
    chunks = list(iter_zip(tmp_path, ["small.txt", "sub/big.bin"]))
    assert max(len(chunk) for chunk in chunks) < 2 * 1024 * 1024
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.read("sub/big.bin") == bytes(range(256)) * 20_000
    assert archive.getinfo("small.txt").compress_type == zipfile.ZIP_DEFLATED
