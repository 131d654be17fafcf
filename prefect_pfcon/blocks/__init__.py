"""Prefect blocks of prefect-pfcon: storage and compute, loaded by name.

Register them with ``prefect block register -m prefect_pfcon.blocks`` (``up`` does it too).
A loaded block is reused for up to ``BLOCK_REUSE_SECONDS``: each job step needs its blocks, and
a load is a Prefect API call. The API process hears of block edits on Prefect's event stream
and calls ``reload_blocks``, so an edit applies to the steps started after it, which find the
blocks loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TypeVar

from cachetools import TTLCache, cached
from prefect.blocks.core import Block

from prefect_pfcon.blocks.compute import (
    COMPUTE_BLOCKS,
    ComputeBlock,
    DockerCompute,
    KubernetesCompute,
    SlurmCompute,
    SwarmCompute,
)
from prefect_pfcon.blocks.storage import (
    STORAGE_BLOCKS,
    FilesystemStorage,
    FSLinkStorage,
    S3Storage,
    StorageBlock,
    SwiftStorage,
    ZipfileStorage,
)

logger = logging.getLogger("prefect_pfcon.blocks")
BlockT = TypeVar("BlockT", bound=Block)
BLOCK_REUSE_SECONDS = 300.0


def _load_by_name(name: str, kinds: Iterable[type[BlockT]]) -> BlockT:
    """Load ``name`` (``slug/name`` or a bare name tried against each kind), synchronously
    also from an async flow's threads."""
    candidates = list(kinds)
    if "/" in name:
        block = Block.load(name, _sync=True)
        if isinstance(block, tuple(candidates)):
            return block
        raise ValueError(f"Block {name!r} is not one of {[c.__name__ for c in candidates]}")
    for kind in candidates:
        try:
            return kind.load(name, _sync=True)
        except ValueError:
            continue
    raise ValueError(f"No block named {name!r} among {[c.__name__ for c in candidates]}")


@cached(TTLCache(maxsize=32, ttl=BLOCK_REUSE_SECONDS), lock=threading.Lock())
def load_storage(name: str) -> StorageBlock:
    """The storage block saved as ``name`` (shared by this process's callers)."""
    return _load_by_name(name, STORAGE_BLOCKS.values())


@cached(TTLCache(maxsize=32, ttl=BLOCK_REUSE_SECONDS), lock=threading.Lock())
def load_compute(name: str) -> ComputeBlock:
    """The compute block saved as ``name`` (shared by this process's callers)."""
    return _load_by_name(name, COMPUTE_BLOCKS.values())


def reload_blocks(storage_name: str, compute_name: str) -> None:
    """Forget every loaded block (one was edited) and load these two again now; one that no
    longer loads is logged by its error's kind only (a validation error would quote the
    block's values, secrets among them), and fails the steps that ask for it."""
    load_storage.cache_clear()
    load_compute.cache_clear()
    for load, name in ((load_storage, storage_name), (load_compute, compute_name)):
        try:
            load(name)
        except Exception as exc:
            logger.warning("Block %r no longer loads (%s); the steps that need it fail",
                           name, type(exc).__name__)


__all__ = [
    "COMPUTE_BLOCKS",
    "STORAGE_BLOCKS",
    "ComputeBlock",
    "DockerCompute",
    "FSLinkStorage",
    "FilesystemStorage",
    "KubernetesCompute",
    "S3Storage",
    "SlurmCompute",
    "StorageBlock",
    "SwarmCompute",
    "SwiftStorage",
    "ZipfileStorage",
    "load_compute",
    "load_storage",
    "reload_blocks",
]
