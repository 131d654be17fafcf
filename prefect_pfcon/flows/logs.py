"""Making a step's logs readable through the API as soon as the step ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.logging.handlers import APILogWorker

DRAIN_SECONDS = 120
"""How long a run's end waits for its queued log records to reach Prefect."""


@contextmanager
def logs_shipped_on_exit() -> Iterator[None]:
    """Send the run's queued log records to Prefect before its final state is set.

    Prefect ships logs in batches; a client that sees a finished status reads the logs next.
    (``APILogHandler.flush`` waits 5 s at most: records still queued then never arrived.)
    Flows call this from their own thread, never from an event loop.
    """
    try:
        yield
    finally:
        APILogWorker.drain_all(timeout=DRAIN_SECONDS)
