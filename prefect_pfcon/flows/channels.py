"""Where a job's flow run gets the steps clients post, and where it reports them.

The flow run of a job stays open between steps. The embedded service runs it in its own
process and hands it each step in memory (``LocalChannel`` in ``prefect_pfcon.service``,
registered here by flow run id). A flow run on a work pool has no such neighbour: it hears
of steps through Prefect (``prefect_pfcon.flows.prefect_channel``).
"""

from __future__ import annotations

import asyncio
import contextvars
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from prefect.client.schemas.objects import State

from prefect_pfcon.flows.attempts import StepRequest

T = TypeVar("T")


@dataclass(frozen=True)
class JobEnd:
    """No more steps will come: why, and whether the job's flow run ends Cancelled."""

    message: str
    cancelled: bool


class StepChannel(ABC):
    """The steps of one job, in the order clients posted them."""

    ships_logs_per_step: bool = False
    """Whether a step's Prefect logs must be all sent before ``ended`` (its readers read them
    from Prefect); otherwise they go in Prefect's own batches."""

    @abstractmethod
    async def next_request(self, idle_seconds: float) -> StepRequest | JobEnd:
        """The next step to run; ``JobEnd`` when none will come (or none came for
        ``idle_seconds``)."""

    @abstractmethod
    def started(self, request: StepRequest, state: State) -> None:
        """The step's task run is about to run (``state`` is Running)."""

    @abstractmethod
    def ended(self, request: StepRequest, state: State) -> None:
        """The step's task run ended in ``state``."""

    @abstractmethod
    def removed(self, request: StepRequest) -> bool:
        """Whether a client DELETE removed the step (called from the step's thread)."""

    def slot_taken(self, request: StepRequest) -> None:
        """The plugin ``request`` holds its ``pfcon-plugins`` slot (called from its thread)."""

    async def run_in_thread(self, request: StepRequest, work: Callable[[], T]) -> T:
        """Run the blocking ``work`` of ``request`` off the event loop, in the caller's Prefect context."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(None, context.run, work)


class ListedSteps(StepChannel):
    """Steps all given up front (a whole job from the Prefect UI or a schedule); the job ends
    at the first that does not complete."""

    def __init__(self, requests: list[StepRequest]) -> None:
        self._requests = list(requests)
        self.states: dict[UUID, State] = {}

    async def next_request(self, idle_seconds: float) -> StepRequest | JobEnd:
        failed = [state for state in self.states.values() if not state.is_completed()]
        if failed or not self._requests:
            return JobEnd("A step did not complete" if failed else "All steps completed", cancelled=False)
        return self._requests.pop(0)

    def started(self, request: StepRequest, state: State) -> None:
        """Nothing to report: the task run's own state is the record."""

    def ended(self, request: StepRequest, state: State) -> None:
        self.states[request.key] = state

    def removed(self, request: StepRequest) -> bool:
        return False


_local_channels: dict[str, StepChannel] = {}


def register_local_channel(flow_run_id: UUID | str, channel: StepChannel) -> None:
    """Hand the flow run ``flow_run_id``, run in this process, its steps through ``channel``."""
    _local_channels[str(flow_run_id)] = channel


def unregister_local_channel(flow_run_id: UUID | str) -> None:
    """The flow run ended (or never started here)."""
    _local_channels.pop(str(flow_run_id), None)


def local_channel(flow_run_id: UUID | str) -> StepChannel | None:
    """The channel registered for a flow run run in this process, if any."""
    return _local_channels.get(str(flow_run_id))
