"""Following Prefect's event stream: state changes of the step runs, edits of blocks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from prefect.client.schemas.objects import State, StateType
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.events.schemas.events import Event

from prefect_pfcon.flows.naming import parse_run_name
from prefect_pfcon.models import JobStep

logger = logging.getLogger("prefect_pfcon.event_stream")

FIRST_RESUBSCRIBE_SECONDS = 1.0
LAST_RESUBSCRIBE_SECONDS = 30.0


@dataclass(frozen=True)
class StepRunChange:
    """A run of (jid, step) entered ``state`` (``None``: a state the event did not spell out)."""

    step: JobStep
    jid: str
    run_id: UUID
    state: State | None


def step_run_change(event: Event) -> StepRunChange | None:
    """The change a flow-run state event tells, if it is about a step run."""
    resource = event.resource
    step_and_jid = parse_run_name(resource.name or "")
    if step_and_jid is None:
        return None
    try:
        state: State | None = State(
            type=StateType(resource["prefect.state-type"]),
            name=resource.get("prefect.state-name"),
            message=resource.get("prefect.state-message"),
            timestamp=datetime.fromisoformat(resource["prefect.state-timestamp"]),
        )
    except (KeyError, ValueError):
        state = None
    return StepRunChange(*step_and_jid, resource.prefect_object_id("prefect.flow-run"), state)


def step_run_changes(deployment_ids: list[UUID]) -> EventFilter:
    """State changes (not heartbeats) of runs of these deployments."""
    return EventFilter(
        event=EventNameFilter(prefix=["prefect.flow-run."], exclude_name=["prefect.flow-run.heartbeat"]),
        related=EventRelatedFilter(id=[f"prefect.deployment.{id_}" for id_ in deployment_ids]),
    )


async def follow_step_runs(
    deployment_ids: list[UUID],
    on_change: Callable[[StepRunChange], None],
    on_subscribed: Callable[[], None],
) -> None:
    """Call ``on_change`` for each state change of a step run, until cancelled.

    ``on_subscribed`` is called on each new subscription: changes made while there was none
    were not heard. (Prefect's subscriber itself reconnects and replays what it missed.)
    """

    def on_event(event: Event) -> None:
        change = step_run_change(event)
        if change is not None:
            on_change(change)

    await _follow(step_run_changes(deployment_ids), on_event, on_subscribed)


async def follow_block_edits(on_edit: Callable[[], None]) -> None:
    """Call ``on_edit`` whenever a block document is changed or deleted (and on each new
    subscription, as edits may have gone unheard), until cancelled."""
    block_edits = EventFilter(
        event=EventNameFilter(name=["prefect.block-document.updated", "prefect.block-document.deleted"])
    )
    await _follow(block_edits, lambda event: on_edit(), on_edit)


async def _follow(
    event_filter: EventFilter, on_event: Callable[[Event], None], on_subscribed: Callable[[], None]
) -> None:
    delay = FIRST_RESUBSCRIBE_SECONDS
    while True:
        try:
            async with get_events_subscriber(filter=event_filter) as events:
                on_subscribed()
                delay = FIRST_RESUBSCRIBE_SECONDS
                async for event in events:
                    on_event(event)
        except Exception as exc:
            logger.warning("No event stream from Prefect (%s); subscribing again in %.0f s",
                           exc or type(exc).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(2 * delay, LAST_RESUBSCRIBE_SECONDS)
