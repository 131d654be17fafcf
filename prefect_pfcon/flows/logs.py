"""Making a step's logs readable through the API as soon as the step ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.logging.handlers import APILogHandler


@contextmanager
def logs_shipped_on_exit() -> Iterator[None]:
    """Send the run's queued log lines to Prefect before its final state is set.

    Prefect ships logs in batches; a client that sees a finished status reads the logs next.
    """
    try:
        yield
    finally:
        APILogHandler().flush()
