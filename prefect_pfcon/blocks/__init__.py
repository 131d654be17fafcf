"""Prefect blocks of prefect-pfcon: storage and compute, loaded by name.

Register them with ``prefect block register -m prefect_pfcon.blocks`` (``up`` does it too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from prefect.blocks.core import Block

from prefect_pfcon.blocks.compute import (
    COMPUTE_BLOCKS,
    ComputeBlock,
    DockerCompute,
    KubernetesCompute,
    SlurmCompute,
)
from prefect_pfcon.blocks.storage import (
    STORAGE_BLOCKS,
    FilesystemStorage,
    FSLinkStorage,
    StorageBlock,
    SwiftStorage,
    ZipfileStorage,
)

BlockT = TypeVar("BlockT", bound=Block)


def _load_by_name(name: str, kinds: Iterable[type[BlockT]]) -> BlockT:
    """Load ``name`` (``slug/name`` or a bare name tried against each kind)."""
    candidates = list(kinds)
    if "/" in name:
        block = Block.load(name)
        if isinstance(block, tuple(candidates)):
            return block
        raise ValueError(f"Block {name!r} is not one of {[c.__name__ for c in candidates]}")
    for kind in candidates:
        try:
            return kind.load(name)
        except ValueError:
            continue
    raise ValueError(f"No block named {name!r} among {[c.__name__ for c in candidates]}")


def load_storage(name: str) -> StorageBlock:
    """The storage block saved as ``name``."""
    return _load_by_name(name, STORAGE_BLOCKS.values())


def load_compute(name: str) -> ComputeBlock:
    """The compute block saved as ``name``."""
    return _load_by_name(name, COMPUTE_BLOCKS.values())


__all__ = [
    "COMPUTE_BLOCKS",
    "STORAGE_BLOCKS",
    "ComputeBlock",
    "DockerCompute",
    "FSLinkStorage",
    "FilesystemStorage",
    "KubernetesCompute",
    "SlurmCompute",
    "StorageBlock",
    "SwiftStorage",
    "ZipfileStorage",
    "load_compute",
    "load_storage",
]
