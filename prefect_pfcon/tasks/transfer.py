"""One generic, parallel file transfer between an fsspec filesystem and local paths."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from fsspec.spec import AbstractFileSystem

FileCopy = Callable[[str, str], object]


def transfer(copy_file: FileCopy, pairs: Sequence[tuple[str, str]], workers: int) -> int:
    """Run ``copy_file(source, destination)`` for every pair on up to ``workers`` threads.

    The first failure cancels what has not started and is raised; returns the count copied.
    """
    if workers <= 1 or len(pairs) <= 1:
        for source, destination in pairs:
            copy_file(source, destination)
        return len(pairs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transfer") as pool:
        futures = [pool.submit(copy_file, source, destination) for source, destination in pairs]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()
    return len(pairs)


def download(fs: AbstractFileSystem, pairs: Sequence[tuple[str, Path]], workers: int) -> int:
    """Fetch ``fs`` paths to local files (parent dirs created first)."""
    for parent in {destination.parent for _, destination in pairs}:
        parent.mkdir(parents=True, exist_ok=True)
    return transfer(fs.get_file, [(source, str(destination)) for source, destination in pairs], workers)


def upload(fs: AbstractFileSystem, pairs: Sequence[tuple[Path, str]], workers: int) -> int:
    """Push local files to ``fs`` paths."""
    return transfer(fs.put_file, [(str(source), destination) for source, destination in pairs], workers)
