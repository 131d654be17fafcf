"""Confinement of client paths to the storeBase."""

import os

import pytest

from prefect_pfcon.tasks.paths import UnsafePathError, normalize_storage_path, resolve_in_store


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
