"""Listing a job's output tree the way pfcon does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

CHRISLINK_SUFFIX = ".chrislink"


def iter_regular_files(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` in directory-walk order; symlinks, FIFOs etc. skipped.

    A directory's files come before its subdirectories, as pfcon's listing shows.
    """
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file():
                yield path


def list_output_files(root: Path, *, skip_chrislinks: bool, delete_chrislinks: bool = False) -> list[str]:
    """Paths relative to ``root`` of the plugin's output files.

    ``skip_chrislinks`` omits ``*.chrislink`` files (plugins may not create links);
    ``delete_chrislinks`` also removes them from disk, as pfcon's fslink mode does.
    """
    listing: list[str] = []
    for path in iter_regular_files(root):
        if skip_chrislinks and path.name.endswith(CHRISLINK_SUFFIX):
            if delete_chrislinks:
                path.unlink()
            continue
        listing.append(path.relative_to(root).as_posix())
    return listing


def count_files(root: Path) -> int:
    """Number of regular files under ``root``."""
    return sum(1 for _ in iter_regular_files(root))
