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
