"""One generic, parallel file transfer between an fsspec filesystem and local paths."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from fsspec.spec import AbstractFileSystem

from prefect_pfcon.tasks.trees import make_dirs

FileCopy = Callable[[str, str], object]
BATCH_FILES = 64


def transfer(copy_file: FileCopy, pairs: Sequence[tuple[str, str]], workers: int) -> int:
    """Run ``copy_file(source, destination)`` for every pair on up to ``workers`` threads.

    Pairs go to the threads in batches, so that many small files cost little more than
    their own copies. The first failure cancels the batches not started and is raised;
    returns the count copied.
    """

    def copy_batch(batch: Sequence[tuple[str, str]]) -> None:
        for source, destination in batch:
            copy_file(source, destination)

    if workers <= 1 or len(pairs) <= 1:
        copy_batch(pairs)
        return len(pairs)
    size = max(1, min(BATCH_FILES, len(pairs) // workers))
    batches = [pairs[start : start + size] for start in range(0, len(pairs), size)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transfer") as pool:
        futures = [pool.submit(copy_batch, batch) for batch in batches]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()
    return len(pairs)


def download(fs: AbstractFileSystem, pairs: Sequence[tuple[str, str]], workers: int) -> int:
    """Fetch ``fs`` paths to local file paths (parent dirs created first).

    Local sources use at most one thread per CPU: such copies are bound by system calls,
    and more threads only contend for the interpreter.
    """
    for parent in {os.path.dirname(destination) for _, destination in pairs}:
        make_dirs(parent)
    if getattr(fs, "local_file", False):
        workers = min(workers, os.cpu_count() or 1)
    return transfer(fs.get_file, pairs, workers)


def upload(fs: AbstractFileSystem, pairs: Sequence[tuple[str, str]], workers: int) -> int:
    """Push local file paths to ``fs`` paths."""
    return transfer(fs.put_file, pairs, workers)
