"""How long a plugin's container may take to start and to run (the compute block's
``start_timeout_seconds`` and ``max_job_seconds``), on every backend."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from prefect_pfcon.blocks.compute.base import ComputeBlock, ComputeError, ContainerState
from prefect_pfcon.models import JobStatus

START_POLL_SECONDS = 1.0
_BEYOND_MICROSECONDS = re.compile(r"(\.\d{6})\d+")


class LimitReached(ComputeError):
    """The service stopped a plugin at one of its limits; the message says which."""


def time_limit_message(seconds: int) -> str:
    """The status ``message`` of a plugin stopped at its time limit."""
    return f"Plugin stopped: it hit its time limit of {seconds} s"


def await_start(compute: ComputeBlock, name: str) -> ContainerState | None:
    """The container's state once it started or ended (``None``: it is gone).

    One that has not started within ``start_timeout_seconds`` is removed and ``LimitReached``
    raised with the backend's reason; time spent waiting its turn in a queue does not count.
    """
    timeout = compute.start_timeout_seconds
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        state = compute.state(name)
        if state is None or state.status is not JobStatus.NOT_STARTED or deadline is None:
            return state
        if state.queued:
            deadline = time.monotonic() + timeout
        elif time.monotonic() >= deadline:
            compute.remove(name)
            raise LimitReached(f"Plugin did not start within {timeout} s: {state.message}")
        time.sleep(START_POLL_SECONDS)


@contextmanager
def time_limit(compute: ComputeBlock, name: str, started: ContainerState | None) -> Iterator[threading.Event]:
    """Within the block, stop the container once it has run ``max_job_seconds`` (counted from
    its start, also across a service restart), unless the backend stops it itself; the event
    tells whether it was stopped."""
    stopped = threading.Event()
    limit = compute.max_job_seconds
    if limit is None or compute.enforces_time_limit:
        yield stopped
        return

    def stop() -> None:
        stopped.set()
        compute.stop(name)

    ran = seconds_since(started.timestamp) if started is not None else 0.0
    timer = threading.Timer(max(limit - ran, 0.0), stop)
    timer.daemon = True
    timer.start()
    try:
        yield stopped
    finally:
        timer.cancel()


def seconds_since(timestamp: str) -> float:
    """Seconds since an engine's RFC 3339 time (nanoseconds allowed); 0 if it is unset."""
    try:
        moment = datetime.fromisoformat(_BEYOND_MICROSECONDS.sub(r"\1", timestamp).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.year < 1970:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max((datetime.now(timezone.utc) - moment).total_seconds(), 0.0)
