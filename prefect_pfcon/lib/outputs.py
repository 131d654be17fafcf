"""Listing a job's output tree the way pfcon does."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from prefect_pfcon.lib.trees import walk

CHRISLINK_SUFFIX = ".chrislink"
logger = logging.getLogger("prefect_pfcon.outputs")


def iter_regular_files(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` in directory-walk order; symlinks, FIFOs etc. skipped.

    A directory's files come before its subdirectories, as pfcon's listing shows.
    """
    for dirpath, _dirnames, filenames in walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file():
                yield path


def is_utf8(name: str) -> bool:
    """Whether a file name read from disk is valid UTF-8 (undecodable bytes come back from
    the OS as lone surrogates, which no JSON answer can carry)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_output_files(root: Path, *, skip_chrislinks: bool, delete_chrislinks: bool = False) -> list[str]:
    """Paths relative to ``root`` of the plugin's output files.

    ``skip_chrislinks`` omits ``*.chrislink`` files (plugins may not create links);
    ``delete_chrislinks`` also removes them from disk, as pfcon's fslink mode does. Paths
    that are not valid UTF-8 are left out with a warning: ChRIS could not register them.
    """
    listing: list[str] = []
    for path in iter_regular_files(root):
        if skip_chrislinks and path.name.endswith(CHRISLINK_SUFFIX):
            if delete_chrislinks:
                path.unlink()
            continue
        rel = path.relative_to(root).as_posix()
        if is_utf8(rel):
            listing.append(rel)
        else:
            _step_logger().warning("Skipping output %r: its name is not valid UTF-8", os.fsencode(rel))
    return listing


def _step_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The running step's Prefect logger (its lines reach the step's logs), else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def count_files(root: Path) -> int:
    """Number of regular files under ``root``."""
    return sum(1 for _ in iter_regular_files(root))
