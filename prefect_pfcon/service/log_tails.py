"""The last log lines of each running job step, kept in this process as they are logged.

Status answers carry a step's log tail. Reading it back from Prefect would cost a request per
status GET (and miss the lines Prefect has not received yet); the steps run in this process,
so their task-run loggers' records are copied here as they are made.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timezone
from uuid import UUID

TASK_RUN_LOGGER = "prefect.task_runs"


def log_line(timestamp: datetime, level: int, message: str) -> str:
    """One log record as a status answer shows it."""
    return f"[{timestamp.isoformat()}] [{logging.getLevelName(level)}] {message}\n"


class LogTails(logging.Handler):
    """The last ``lines`` lines logged by each watched task run."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self._lines = lines
        self._tails: dict[str, deque[str]] = {}
        self._guard = threading.Lock()

    def install(self) -> None:
        """Start copying the records of Prefect's task-run loggers."""
        logging.getLogger(TASK_RUN_LOGGER).addHandler(self)

    def uninstall(self) -> None:
        """Stop copying."""
        logging.getLogger(TASK_RUN_LOGGER).removeHandler(self)

    def watch(self, task_run_id: UUID) -> None:
        """Keep the lines of this task run from now on."""
        with self._guard:
            self._tails.setdefault(str(task_run_id), deque(maxlen=self._lines))

    def tail(self, task_run_id: UUID) -> str | None:
        """The lines kept for a watched task run so far."""
        with self._guard:
            tail = self._tails.get(str(task_run_id))
            return None if tail is None else "".join(tail)

    def finish(self, task_run_id: UUID) -> str:
        """Stop watching a task run; its lines."""
        with self._guard:
            return "".join(self._tails.pop(str(task_run_id), ()))

    def emit(self, record: logging.LogRecord) -> None:
        tail = self._tails.get(str(getattr(record, "task_run_id", "")))
        if tail is None:
            return
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        text = log_line(moment, record.levelno, record.getMessage())
        with self._guard:
            tail.extend(text.splitlines(keepends=True))
