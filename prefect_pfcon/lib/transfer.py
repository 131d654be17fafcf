"""One generic, parallel file transfer between an fsspec filesystem and local paths."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from fsspec.spec import AbstractFileSystem

from prefect_pfcon.lib.trees import make_dirs

FileCopy = Callable[[str, str], object]


def transfer(copy_file: FileCopy, pairs: Sequence[tuple[str, str]], workers: int) -> int:
    """Run ``copy_file(source, destination)`` for every pair on up to ``workers`` threads.

    Each thread takes the next pair as soon as it is done with one, so all stay busy to the
    end whatever the files' sizes (a fixed split leaves threads idle while others finish).
    The first failure stops the threads taking more pairs and is raised; returns the count copied.
    """
    if workers <= 1 or len(pairs) <= 1:
        for source, destination in pairs:
            copy_file(source, destination)
        return len(pairs)
    remaining = iter(pairs)
    lock = threading.Lock()
    failed = threading.Event()

    def copy_until_done() -> None:
        while not failed.is_set():
            with lock:
                pair = next(remaining, None)
            if pair is None:
                return
            try:
                copy_file(*pair)
            except BaseException:
                failed.set()
                raise

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transfer") as pool:
        futures = [pool.submit(copy_until_done) for _ in range(min(workers, len(pairs)))]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
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
