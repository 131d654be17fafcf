"""A slot of the Prefect global concurrency limit that bounds the plugins running at once.

A plugin holds one slot of ``pfcon-plugins`` (``PFCON_MAX_RUNNING_PLUGINS`` slots) from just
before its container is launched until it is watched to its end, under a Prefect lease that a
thread renews (a killed process's slot frees when its lease expires, ``LEASE_SECONDS``); the
container carries the lease's id, so a plugin re-attaching after a restart renews the lease it
runs under instead of asking for a new slot. While the limit is full, a waiting plugin asks
again at Prefect's ``Retry-After`` (at most ``POLL_SECONDS``), or at once when a plugin of this
process gives its slot back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import ConcurrencyLeaseHolder

LEASE_SECONDS = 60.0  # Prefect's shortest lease
RENEW_SECONDS, RETRY_SECONDS = 45.0, 5.0
LEASE_GONE = 410
POLL_SECONDS = 2.0
REMOVED_WAITING = "Removed by a client DELETE before it held a plugin slot"
_released = threading.Condition()


class SlotWaitEnded(Exception):
    """The plugin stopped waiting for a slot (a client DELETE removed it)."""


@contextmanager
def plugin_slot(limit: str | None, task_run_id: str, *, attached: bool, held: str | None,
                taken: Callable[[], None], removed: Callable[[], bool]) -> Iterator[UUID | None]:
    """Hold a slot of ``limit`` (none if ``None``) for the block; its lease's id, ``None``
    without one. ``taken`` is called once it is held. A plugin ``attached`` to the container
    it started renews the lease that container ran under (``held``), else takes a free slot
    if there is one, else runs without (it does not wait for the slot it has). Raises
    ``SlotWaitEnded`` if ``removed`` before it holds one."""
    if limit is None:
        yield None
        return
    with get_client(sync_client=True) as client:
        lease = _renewed(client, held) if held else None
        if lease is None:
            lease = _acquire(client, limit, UUID(task_run_id), not attached, removed)
    taken()
    if lease is None:
        yield None
        return
    try:
        if removed():
            raise SlotWaitEnded(REMOVED_WAITING)
        with _renewing(lease):
            yield lease
    finally:
        _release(lease)


@contextmanager
def _renewing(lease: UUID) -> Iterator[None]:
    """Renew the lease every ``RENEW_SECONDS`` until the block ends; after a failed renewal
    (Prefect unreachable) try again every ``RETRY_SECONDS``, until Prefect says it is gone."""
    logger = get_run_logger()
    stop = threading.Event()

    def renew() -> None:
        pause = RENEW_SECONDS
        with ExitStack() as stack:  # a client only for plugins that run long enough to renew
            client: SyncPrefectClient | None = None
            while not stop.wait(pause):
                client = client or stack.enter_context(get_client(sync_client=True))
                try:
                    client.renew_concurrency_lease(lease_id=lease, lease_duration=LEASE_SECONDS)
                    pause = RENEW_SECONDS
                except Exception as exc:
                    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == LEASE_GONE:
                        logger.warning("The plugin slot's lease %s expired: the limit no longer counts "
                                       "this plugin", lease)
                        return
                    logger.warning("Could not renew the plugin slot's lease %s: %s", lease, exc)
                    pause = RETRY_SECONDS  # Prefect unreachable for now: the lease may still be saved

    renewer = threading.Thread(target=renew, name=f"pfcon-slot-{lease}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=5)


def _renewed(client: SyncPrefectClient, held: str) -> UUID | None:
    """The lease ``held``, renewed; ``None`` if it expired."""
    try:
        client.renew_concurrency_lease(lease_id=UUID(held), lease_duration=LEASE_SECONDS)
    except (httpx.HTTPStatusError, ValueError):
        return None
    get_run_logger().info("Re-attached in the plugin slot it held (lease %s)", held)
    return UUID(held)


def _release(lease: UUID) -> None:
    """Give the slot back, and have this process's waiter ask for it at once."""
    with get_client(sync_client=True) as client:
        client.release_concurrency_slots_with_lease(lease_id=lease)
    with _released:
        _released.notify_all()


def _acquire(client: SyncPrefectClient, limit: str, task_run_id: UUID, wait: bool,
             removed: Callable[[], bool]) -> UUID | None:
    """The lease of a slot of ``limit``; ``None`` if the limit does not exist, or is full and
    ``wait`` is false."""
    logger = get_run_logger()
    holder = ConcurrencyLeaseHolder(type="task_run", id=task_run_id)
    waiting = False
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
                logger.warning("Re-attached without a slot of %s: none is free", limit)
                return None
            if not waiting:
                logger.info("Waiting for a slot of the concurrency limit %s", limit)
                waiting = True
            with _released:
                _released.wait(min(float(exc.response.headers.get("Retry-After", POLL_SECONDS)), POLL_SECONDS))
            continue
        body = response.json()
        if not body.get("limits"):
            logger.warning("The concurrency limit %s does not exist: running without a slot", limit)
            return None
        logger.info("Holding a slot of the concurrency limit %s", limit)
        return UUID(body["lease_id"])
