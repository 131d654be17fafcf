"""Stops the concurrency service Prefect keeps per set of task-run tags, once a step ended.

Before a task run with tags runs, Prefect 3.8 asks the server for slots of its tags'
concurrency limits through a queue service, with a thread of its own, made for that exact set
of tags and kept for the life of the process. Every job's steps carry their own ``jid:`` tag,
so each step would leave a service and its thread behind, and with it (through the drain call
the global loop keeps for its shutdown, made in the step's context, and the exit hook
``threading`` keeps) the step's whole task run context and a Prefect client: about 0.4 MB of
the service's memory per job, never released. A step's tag set is its own (one jid, one step,
never two attempts at once), so once it ended its service can go, with both references.
"""

from __future__ import annotations

import threading

from prefect import Task
from prefect._internal.concurrency.api import create_call, from_sync
from prefect._internal.concurrency.threads import get_global_loop
from prefect.concurrency.services import ConcurrencySlotAcquisitionWithLeaseService
from prefect.context import TagsContext


def drain_tag_limit_service(task: Task) -> None:
    """Drain (stop, its thread ended) the service Prefect made for a run of ``task`` under the
    current tags, if it made one."""
    tags = set(task.tags).union(TagsContext.get().current_tags or [])
    names = frozenset(f"tag:{tag}" for tag in tags)
    service_type = ConcurrencySlotAcquisitionWithLeaseService
    service = service_type._instances.get(hash((service_type, names)))
    if service is None:
        return
    service.drain()
    from_sync.call_soon_in_loop_thread(create_call(_forget_shutdown_drain, service)).result()


def _forget_shutdown_drain(service: ConcurrencySlotAcquisitionWithLeaseService) -> None:
    """Drop the global loop's call to drain ``service`` at shutdown and ``threading``'s exit
    hook for it (on the loop's thread, which made both)."""
    loop = get_global_loop()
    loop._on_shutdown = [call for call in loop._on_shutdown if getattr(call.fn, "__self__", None) is not service]
    hooks = threading._threading_atexits  # CPython's list behind threading._register_atexit
    hooks[:] = [hook for hook in hooks if getattr(getattr(hook, "func", None), "__self__", None) is not service]
