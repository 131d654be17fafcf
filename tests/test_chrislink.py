"""Staging with .chrislink resolution on real files: pfcon's results, and confinement."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from fixtures_tree import FSLINK_STAGED, make_fslink_fixture, tree
from prefect_pfcon.lib.filesystems import StoreBaseFileSystem
from prefect_pfcon.lib.filesystems.storebase import SpecialFileError, place_file
from prefect_pfcon.lib.chrislink import InvalidInputPath, expand_links, stage_inputs
from prefect_pfcon.lib.paths import UnsafePathError


@pytest.fixture
def store(tmp_path: Path) -> Path:
    make_fslink_fixture(tmp_path / "store")
    return tmp_path / "store"


def stage(
    store: Path, input_dirs: list[str], output_dir: str = "home/alice/feed/out", hardlink: bool = False
) -> tuple[int, list[str]]:
    incoming = store / "key-j" / "incoming"
    fs = StoreBaseFileSystem(store, hardlink=hardlink)
    nfiles = stage_inputs(fs, input_dirs, output_dir, incoming, workers=4)
    return nfiles, tree(incoming)


def test_observed_fslink_fixture(store):
    assert stage(store, ["home/alice/feed/in"]) == (4, FSLINK_STAGED)


def test_leading_slash_is_stripped(store):
    assert stage(store, ["/home/alice/feed/in/"]) == (4, FSLINK_STAGED)


def test_multiple_input_dirs(store):
    nfiles, staged = stage(store, ["home/alice/feed/in", "SHARED/data"])
    assert "s2.txt" in staged and "a.txt" in staged
    assert nfiles == 5  # s1.txt was already copied through the first dir's link


def test_link_to_a_file_brings_only_that_file(store):
    (store / "only").mkdir()
    (store / "only" / "f.chrislink").write_text("SHARED/data/s2.txt")
    assert stage(store, ["only"]) == (1, ["SHARED_data/s2.txt"])


def test_input_dir_that_is_a_file(store):
    assert stage(store, ["SHARED/data/s1.txt"]) == (1, ["s1.txt"])


@pytest.mark.parametrize("target", ["home/alice", "home/alice/feed/out", "home/alice/feed/out/"])
def test_link_to_output_dir_or_ancestor_is_refused(store, target):
    (store / "home/alice/feed/in/up.chrislink").write_text(target)
    with pytest.raises(InvalidInputPath, match=f"Invalid input path: {target.rstrip('/')}"):
        stage(store, ["home/alice/feed/in"])


def test_link_target_escaping_the_store(store, tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "s.txt").write_text("secret")
    (store / "home/alice/feed/in/esc.chrislink").write_text("../secret")
    with pytest.raises(UnsafePathError):
        stage(store, ["home/alice/feed/in"])
    assert not list(store.rglob("s.txt"))


def test_symlinks_in_input_trees_are_not_followed(store, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "o.txt").write_text("o")
    os.symlink(tmp_path / "outside", store / "home/alice/feed/in/dirlink")
    os.symlink(tmp_path / "outside" / "o.txt", store / "home/alice/feed/in/filelink.txt")
    assert stage(store, ["home/alice/feed/in"]) == (4, FSLINK_STAGED)


def test_symlinked_input_dir_escaping_the_store(store, tmp_path):
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", store / "evil")
    with pytest.raises(UnsafePathError):
        stage(store, ["evil"])
    with pytest.raises(UnsafePathError):
        stage(store, ["home/../../outside"])


def test_missing_input_dir_is_an_error(store):
    with pytest.raises(FileNotFoundError, match="nothing/here"):
        stage(store, ["nothing/here"])


def test_no_input_dirs(store):
    assert stage(store, []) == (0, [])
    assert (store / "key-j" / "incoming").is_dir()


def test_hardlinks_share_inodes(store):
    assert stage(store, ["home/alice/feed/in"], hardlink=True) == (4, FSLINK_STAGED)
    staged = store / "key-j" / "incoming" / "a.txt"
    assert staged.stat().st_ino == (store / "home/alice/feed/in/a.txt").stat().st_ino


def test_hard_links_fall_back_to_copies_across_filesystems(tmp_path):
    shm = Path("/dev/shm") / f"pfcon-test-{os.getpid()}"  # tmpfs: another filesystem than tmp_path
    shm.mkdir()
    try:
        (shm / "f.txt").write_text("data")
        place_file(shm / "f.txt", tmp_path / "f.txt", hardlink=True)
        assert (tmp_path / "f.txt").read_text() == "data"
        assert (tmp_path / "f.txt").stat().st_ino != (shm / "f.txt").stat().st_ino
    finally:
        shutil.rmtree(shm)


def test_expand_links_stays_inside_incoming(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "o.txt").write_text("o")
    (incoming / "l.chrislink").write_text("../outside")
    with pytest.raises(UnsafePathError):
        expand_links(incoming)
    assert tree(incoming) == ["l.chrislink"]


def test_staging_again_replaces_the_previous_inputs(store):
    from prefect_pfcon.blocks.storage import FSLinkStorage
    from prefect_pfcon.models import CopyJob

    storage = FSLinkStorage(store_base=str(store))  # hard links, the default
    job = CopyJob(jid="again", input_dirs=["home/alice/feed/in"], output_dir="home/alice/feed/out")
    assert storage.stage_in(job) == 4
    (storage.incoming("again") / "stale.txt").write_text("from an earlier attempt")
    assert storage.stage_in(job) == 4  # a retried copy: same inputs, nothing stale, no error
    assert tree(storage.incoming("again")) == FSLINK_STAGED


@pytest.mark.parametrize("content", ["", "\n", ".", "/", "./", "//", "proj", "proj/data/", "proj/./data", "proj//data"])
def test_link_to_the_storage_root_or_an_ancestor_of_an_input_is_refused(store, content):
    (store / "proj/data/in").mkdir(parents=True)
    (store / "proj/data/in/a.txt").write_text("a")
    (store / "proj/data/in/up.chrislink").write_text(content)
    with pytest.raises(InvalidInputPath, match="Invalid input path: "):
        stage(store, ["proj/data/in"])
    assert tree(store / "key-j" / "incoming") == []


def test_link_targets_are_canonical_storage_paths(store):
    (store / "only").mkdir()
    (store / "only" / "f.chrislink").write_text("SHARED//data/./s2.txt")
    assert stage(store, ["only"]) == (1, ["SHARED_data/s2.txt"])


def test_fifos_sockets_and_devices_are_not_staged(store):
    inputs = store / "home/alice/feed/in"
    os.mkfifo(inputs / "fifo")
    os.mknod(inputs / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(inputs / "sock"))
        for hardlink in (True, False):
            shutil.rmtree(store / "key-j", ignore_errors=True)
            assert stage(store, ["home/alice/feed/in"], hardlink=hardlink) == (4, FSLINK_STAGED)


def test_special_files_are_never_linked_or_copied(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    os.mknod(tmp_path / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    (tmp_path / "file").write_text("f")
    os.symlink(tmp_path / "file", tmp_path / "symlink")
    for name in ("fifo", "zero", "symlink"):
        for hardlink in (True, False):
            with pytest.raises(SpecialFileError, match="is not a regular file"):
                place_file(tmp_path / name, tmp_path / "placed", hardlink=hardlink)
            assert not os.path.lexists(tmp_path / "placed")
    place_file(tmp_path / "file", tmp_path / "placed", hardlink=False)
    assert (tmp_path / "placed").read_text() == "f"
    (tmp_path / "other").write_text("other")
    os.symlink(tmp_path / "file", tmp_path / "trap")  # a destination that is a symlink is not written through
    with pytest.raises(OSError):
        place_file(tmp_path / "other", tmp_path / "trap", hardlink=False)
    assert (tmp_path / "file").read_text() == "f"


@pytest.mark.parametrize("name", ["home/alice/feed/in/../../../../x", "home/alice/feed/in//x", "home/./x"])
def test_storage_names_that_are_not_plain_are_refused(tmp_path, name):
    class Listing(StoreBaseFileSystem):
        """The storeBase, plus one file name as an object store may list it."""

        def find(self, path, **kwargs):
            return [*super().find(path, **kwargs), name]

    make_fslink_fixture(tmp_path / "store")
    with pytest.raises(UnsafePathError, match="is not a plain relative path"):
        stage_inputs(Listing(tmp_path / "store"), ["home"], "out", tmp_path / "incoming")
    assert tree(tmp_path / "incoming") == []
