"""Plugin output lines grouped into Prefect log records.

One record per line costs Prefect a queue item, a JSON object and a database row each: a
chatty plugin's lines reached Prefect only partly. Lines that arrive close together become
one record instead (at most ``RECORD_SECONDS`` after the group's first line, and about
``RECORD_BYTES`` of JSON text, well under Prefect's 1,000,000-byte ``max_log_size``).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator

RECORD_SECONDS = 0.25
RECORD_BYTES = 256 * 1024
QUEUED_LINES = 256  # what the reader may get ahead by (lines are at most 64 KiB)
_END = object()


class _Reader(threading.Thread):
    """Puts the lines of ``lines`` on a bounded queue, then ``_END`` (or the error)."""

    def __init__(self, lines: Iterable[str]) -> None:
        super().__init__(name="pfcon-log-reader", daemon=True)
        self.lines = lines
        self.queue: queue.Queue[object] = queue.Queue(maxsize=QUEUED_LINES)
        self.stopped = threading.Event()

    def run(self) -> None:
        end: object = _END
        try:
            for line in self.lines:
                if not self._put(line):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            end = error
        self._put(end)

    def _put(self, item: object) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False


def grouped_lines(
    lines: Iterable[str], seconds: float = RECORD_SECONDS, max_bytes: int = RECORD_BYTES
) -> Iterator[list[str]]:
    """``lines`` (read on a thread, as they come) in groups: those that arrive within
    ``seconds`` of a group's first line, while the group is under ``max_bytes`` as JSON."""
    reader = _Reader(lines)
    reader.start()
    try:
        ending: object = reader.queue.get()
        while isinstance(ending, str):
            group, size, ending = [ending], _json_size(ending), None
            deadline = time.monotonic() + seconds
            while size < max_bytes and (left := deadline - time.monotonic()) > 0:
                try:
                    item = reader.queue.get(timeout=left)
                except queue.Empty:
                    break
                if not isinstance(item, str):
                    ending = item
                    break
                group.append(item)
                size += _json_size(item)
            yield group
            if ending is None:
                ending = reader.queue.get()
        if isinstance(ending, BaseException):
            raise ending
    finally:
        reader.stopped.set()


def _json_size(line: str) -> int:
    return len(json.dumps(line)) - 1  # its quotes, less the newline joining it to the next
