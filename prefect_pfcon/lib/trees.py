"""Walking, creating, copying and removing directory trees without recursion.

Plugins and clients decide how deep their trees are; Python 3.11's ``os.walk``,
``shutil.rmtree``, ``shutil.copytree`` and ``os.makedirs`` recurse once per level and fail
with ``RecursionError`` near 1,000 levels. These keep their own stacks instead, and never
follow symbolic links.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def walk(top: str | Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``(dirpath, dirnames, filenames)`` top-down, as ``os.walk``; ``dirnames`` holds only
    real directories (a symlink to one is in ``filenames``), and removing names from it
    prunes the walk. Directories that cannot be read are skipped."""
    stack = [os.fspath(top)]
    while stack:
        dirpath = stack.pop()
        try:
            with os.scandir(dirpath) as scan:
                entries = list(scan)
        except OSError:
            continue
        dirnames: list[str] = []
        filenames: list[str] = []
        for entry in entries:
            (dirnames if _is_real_dir(entry) else filenames).append(entry.name)
        yield dirpath, dirnames, filenames
        stack.extend(os.path.join(dirpath, name) for name in reversed(dirnames))


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def make_dirs(path: str | Path) -> None:
    """``os.makedirs(path, exist_ok=True)``, one level at a time from the deepest that exists."""
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def copy_tree(source: str | Path, destination: str | Path, copy_file: Callable[[str, str], object]) -> None:
    """Copy the tree ``source`` to the new directory ``destination``: files with
    ``copy_file(src, dst)``, symbolic links as links (never followed)."""
    source, destination = os.fspath(source), os.fspath(destination)
    os.mkdir(destination)
    for dirpath, dirnames, filenames in walk(source):
        target = os.path.join(destination, os.path.relpath(dirpath, source))
        for name in dirnames:
            os.mkdir(os.path.join(target, name))
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), os.path.join(target, name))
            else:
                copy_file(path, os.path.join(target, name))


def remove_tree(path: str | Path, ignore_errors: bool = False) -> None:
    """Remove the directory ``path`` and everything in it, like ``shutil.rmtree``.

    Each directory is opened relative to its parent without following links, so a link
    swapped in meanwhile is removed, never entered. ``ignore_errors`` stops quietly at the
    first error (a missing ``path`` included).
    """
    try:
        _remove_tree(os.fspath(path))
    except OSError:
        if not ignore_errors:
            raise


def _remove_tree(path: str) -> None:
    top = os.open(path, DIR_FLAGS)
    stack: list[tuple[int, Iterator[os.DirEntry[str]], str]] = [(top, _entries(top), "")]
    try:
        while stack:
            fd, entries, name = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                os.close(fd)
                if stack:
                    os.rmdir(name, dir_fd=stack[-1][0])
            elif _is_real_dir(entry):
                child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                stack.append((child, _entries(child), entry.name))
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    os.rmdir(path)


def _entries(fd: int) -> Iterator[os.DirEntry[str]]:
    """A directory's entries, read at once (the loop then removes them)."""
    with os.scandir(fd) as scan:
        return iter(list(scan))
