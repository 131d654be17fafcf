"""Confinement of client paths to the storeBase."""

import os

import pytest

from prefect_pfcon.lib.paths import (
    ConfinedDir,
    UnsafePathError,
    normalize_storage_path,
    plain_relative_name,
    resolve_in_store,
)


@pytest.mark.parametrize("raw, clean", [("/home/a/", "home/a"), (" x ", "x"), ("/", ""), ("a//b", "a//b")])
def test_normalize(raw, clean):
    assert normalize_storage_path(raw) == clean


@pytest.mark.parametrize("raw", ["..", "a/../../b", "../x", "a/..", "a\x00b"])
def test_refused(raw):
    with pytest.raises(UnsafePathError):
        normalize_storage_path(raw)


def test_resolve_inside_and_symlink_escape(tmp_path):
    store = tmp_path / "store"
    (store / "in").mkdir(parents=True)
    os.symlink(tmp_path, store / "up")
    os.symlink(store / "in", store / "inner")
    assert resolve_in_store(store, "in/new/file") == store / "in/new/file"
    assert resolve_in_store(store, "inner") == store / "in"
    with pytest.raises(UnsafePathError):
        resolve_in_store(store, "up")


@pytest.mark.parametrize("name", ["", "/a", "a//b", "a/", "../a", "a/../b", "a/./b", ".", "a\x00b"])
def test_names_that_are_not_plain_are_refused(name):
    with pytest.raises(UnsafePathError, match="not a plain relative path"):
        plain_relative_name(name)


def test_destinations_stay_in_their_directory(tmp_path):
    incoming = tmp_path / "incoming"
    (incoming / "sub").mkdir(parents=True)
    os.symlink(tmp_path, incoming / "up")
    confined = ConfinedDir(incoming, "incoming")
    assert confined.destination("sub/a.txt") == str(incoming / "sub/a.txt")
    assert confined.destination("new/dir/b.txt") == str(incoming / "new/dir/b.txt")
    for name in ("up/x.txt", "up/deeper/x.txt"):
        with pytest.raises(UnsafePathError, match="resolves outside incoming"):
            confined.destination(name)
    with pytest.raises(UnsafePathError):
        confined.destination("/etc/passwd")
