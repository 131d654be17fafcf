"""A slot of the Prefect global concurrency limit that bounds the plugins running at once.

A plugin holds one slot of ``pfcon-plugins`` (``PFCON_MAX_RUNNING_PLUGINS`` slots) from just
before its container is launched until it is watched to its end, under a Prefect lease that a
thread renews (a killed process's slot frees when its lease expires, ``LEASE_SECONDS``). While
the limit is full, the waiting plugin asks again at Prefect's ``Retry-After`` (at most
``POLL_SECONDS``), or at once when a plugin of this process gives its slot back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._leases import maintain_concurrency_lease

LEASE_SECONDS = 60.0  # Prefect's shortest lease
POLL_SECONDS = 2.0
REMOVED_WAITING = "Removed by a client DELETE before it held a plugin slot"
_released = threading.Condition()


class SlotWaitEnded(Exception):
    """The plugin stopped waiting for a slot (a client DELETE removed it)."""


@contextmanager
def plugin_slot(limit: str | None, task_run_id: str, *, wait: bool, taken: Callable[[], None],
                removed: Callable[[], bool]) -> Iterator[None]:
    """Hold a slot of ``limit`` (none if ``None``) for the block; ``taken`` is called once it
    is held. ``wait=False`` (a plugin re-attaching to its running container, whose slot its
    killed predecessor's lease still counts) tries once and runs without a slot if none is
    free. Raises ``SlotWaitEnded`` if ``removed`` while waiting."""
    if limit is None:
        yield
        return
    lease = _acquire(limit, UUID(task_run_id), wait, removed)
    taken()
    if lease is None:
        yield
        return
    try:
        if removed():
            raise SlotWaitEnded(REMOVED_WAITING)
        with maintain_concurrency_lease(lease, LEASE_SECONDS):
            yield
    finally:
        _release(lease)


def _release(lease: UUID) -> None:
    """Give the slot back, and have this process's waiter ask for it at once."""
    with get_client(sync_client=True) as client:
        client.release_concurrency_slots_with_lease(lease_id=lease)
    with _released:
        _released.notify_all()


def _acquire(limit: str, task_run_id: UUID, wait: bool, removed: Callable[[], bool]) -> UUID | None:
    """The lease of a slot of ``limit``; ``None`` if the limit does not exist, or is full and
    ``wait`` is false."""
    logger = get_run_logger()
    holder = ConcurrencyLeaseHolder(type="task_run", id=task_run_id)
    waiting = False
    with get_client(sync_client=True) as client:
        while True:
            if removed():
                raise SlotWaitEnded(REMOVED_WAITING)
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[limit], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS, holder=holder)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:
                    raise
                if not wait:
                    logger.info("Re-attached without a slot of %s: none is free (its earlier lease counts "
                                "until it expires)", limit)
                    return None
                if not waiting:
                    logger.info("Waiting for a slot of the concurrency limit %s", limit)
                    waiting = True
                with _released:
                    _released.wait(min(float(exc.response.headers.get("Retry-After", POLL_SECONDS)),
                                       POLL_SECONDS))
                continue
            body = response.json()
            if not body.get("limits"):
                logger.warning("The concurrency limit %s does not exist: running without a slot", limit)
                return None
            logger.info("Holding a slot of the concurrency limit %s", limit)
            return UUID(body["lease_id"])
