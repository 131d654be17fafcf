"""Confining client-supplied storage paths to the storeBase."""

from __future__ import annotations

import os
from pathlib import Path


class UnsafePathError(ValueError):
    """A storage path that would leave the storeBase."""


def normalize_storage_path(rel: str) -> str:
    """Strip whitespace and outer ``/``; refuse ``..`` components and NUL bytes."""
    cleaned = rel.strip().strip("/")
    if "\x00" in cleaned:
        raise UnsafePathError(f"Path {rel!r} contains a NUL byte")
    if ".." in cleaned.split("/"):
        raise UnsafePathError(f"Path {rel!r} leaves the storeBase")
    return cleaned


def is_within(root: Path, path: Path) -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved)."""
    return path == root or root in path.parents


def resolve_in_store(store_base: Path, rel: str) -> Path:
    """The real path of ``rel`` under ``store_base``; symlinks that escape are refused."""
    root = Path(os.path.realpath(store_base))
    real = Path(os.path.realpath(root / normalize_storage_path(rel)))
    if not is_within(root, real):
        raise UnsafePathError(f"Path {rel!r} resolves outside the storeBase")
    return real


def plain_relative_name(name: str) -> str:
    """``name`` if it is a plain relative path: no leading ``/``, no empty, ``.`` or ``..``
    segment, no NUL byte (an object or file name that could never leave a directory)."""
    if "\x00" in name or not name or any(part in ("", ".", "..") for part in name.split("/")):
        raise UnsafePathError(f"Name {name!r} is not a plain relative path (no '..', '//' or leading '/')")
    return name


class ConfinedDir:
    """Paths under one local directory, refused if they (through any symlink) resolve
    outside it. Real paths of parent directories are remembered, so checking many files of
    one directory costs one ``lstat`` each, and a new file's destination none."""

    def __init__(self, root: str | Path, label: str | None = None) -> None:
        self.root = os.path.realpath(root)
        self.label = label or self.root
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._real_parents: dict[str, str] = {}

    def join(self, rel: str) -> str:
        """``root/rel`` for a lexically checked ``rel`` (``""`` is the root itself)."""
        if not rel:
            return self.root
        path = os.path.join(self.root, rel)
        real = os.path.realpath(path) if os.path.islink(path) else self._real_parent(path, rel)
        self._check(real, rel)
        return path

    def destination(self, name: str) -> str:
        """Where a new file ``name`` (a plain relative name) goes: its directory must resolve
        inside the root (the file itself is created there, never followed)."""
        path = os.path.join(self.root, plain_relative_name(name))
        self._check(self._real_parent(path, name), name)
        return path

    def _real_parent(self, path: str, rel: str) -> str:
        """``path`` with its directory's symlinks resolved."""
        parent = os.path.dirname(path)
        real_parent = self._real_parents.get(parent)
        if real_parent is None:
            real_parent = self._real_parents[parent] = os.path.realpath(parent)
        return os.path.join(real_parent, os.path.basename(path))

    def _check(self, real: str, rel: str) -> None:
        if not (real == self.root or real.startswith(self._prefix)):
            raise UnsafePathError(f"Path {rel!r} resolves outside {self.label}")
