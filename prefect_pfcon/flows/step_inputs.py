"""A work-pool job's steps as its flow run's inputs: what the API and the flow run write there.

Each is one flow-run input of the job's flow run (Prefect keeps them in its database, with the
run); keys are unique per flow run, which makes accepting a step a compare-and-set:

* ``pfcon-step-<step>-<after>`` (the API): a ``StepRequest``; ``<after>`` is the attempt of the
  step it follows (``first`` for none), so two replicas that saw the same newest attempt
  write one request;
* ``pfcon-removed-<key>`` (the API): a client DELETEd the attempt;
* ``pfcon-started-<key>``, ``pfcon-ended-<key>`` (the flow run): the attempt's task run began,
  and ended in this state, after its logs reached Prefect.

After each write the API emits ``pfcon.job.step-requested`` or ``pfcon.job.step-removed``
about the flow run (``prefect.flow-run.<id>``), which wakes the flow run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRunInput, State
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from prefect_pfcon.flows.attempts import StepRequest
from prefect_pfcon.models import JobStep

PREFIX = "pfcon-"
STEP, REMOVED, STARTED, ENDED = "pfcon-step-", "pfcon-removed-", "pfcon-started-", "pfcon-ended-"
MAX_INPUTS = 10_000
"""Inputs read at once: a job has a few per attempt."""
EVENT_PREFIX = "pfcon.job."
STEP_REQUESTED, STEP_REMOVED = "pfcon.job.step-requested", "pfcon.job.step-removed"
STATE_FIELDS = {"type", "name", "message", "timestamp"}


def step_key(step: JobStep, after: UUID | None) -> str:
    """The key of the request that follows the attempt ``after`` of ``step``."""
    return f"{STEP}{step.value}-{after or 'first'}"


def removed_key(key: UUID) -> str:
    """The key that marks the attempt ``key`` removed."""
    return f"{REMOVED}{key}"


def started_key(key: UUID) -> str:
    """The key of the attempt's start."""
    return f"{STARTED}{key}"


def ended_key(key: UUID) -> str:
    """The key of the attempt's final state."""
    return f"{ENDED}{key}"


def state_json(state: State) -> str:
    """A state as an input stores it (no result data)."""
    return state.model_dump_json(include=STATE_FIELDS)


def flow_run_resource(flow_run_id: UUID | str) -> str:
    """The resource id of the job's flow run in the events about it."""
    return f"prefect.flow-run.{flow_run_id}"


def events_of(flow_run_id: UUID | str) -> EventFilter:
    """The events that tell the flow run its inputs changed."""
    return EventFilter(event=EventNameFilter(prefix=[EVENT_PREFIX]),
                       resource=EventResourceFilter(id=[flow_run_resource(flow_run_id)]))


@dataclass(frozen=True)
class JobInputs:
    """The inputs of one flow run of a job, read at one moment."""

    requests: list[StepRequest] = field(default_factory=list)
    """In the order they were accepted."""
    started: dict[UUID, State] = field(default_factory=dict)
    ended: dict[UUID, State] = field(default_factory=dict)
    removed: set[UUID] = field(default_factory=set)

    @classmethod
    def parse(cls, inputs: list[FlowRunInput]) -> JobInputs:
        """The record in ``inputs`` (other keys are ignored)."""
        record = cls()
        for item in inputs:
            if item.key.startswith(STEP):
                record.requests.append(StepRequest.from_json(item.value))
            elif item.key.startswith(REMOVED):
                record.removed.add(UUID(item.key.removeprefix(REMOVED)))
            elif item.key.startswith(STARTED):
                record.started[UUID(item.key.removeprefix(STARTED))] = State.model_validate_json(item.value)
            elif item.key.startswith(ENDED):
                record.ended[UUID(item.key.removeprefix(ENDED))] = State.model_validate_json(item.value)
        record.requests.sort(key=lambda request: request.accepted)
        return record

    def newest(self) -> dict[JobStep, StepRequest]:
        """The newest request of each step it has."""
        return {request.step: request for request in self.requests}

    def to_run(self) -> list[StepRequest]:
        """The newest requests that did not end and were not removed, oldest first."""
        waiting = [request for request in self.newest().values()
                   if request.key not in self.ended and request.key not in self.removed]
        return sorted(waiting, key=lambda request: request.accepted)

    @property
    def forgotten(self) -> bool:
        """Whether clients DELETEd the newest request of every step."""
        newest = self.newest().values()
        return bool(newest) and all(request.key in self.removed for request in newest)


async def read_job_inputs(client: PrefectClient, flow_run_id: UUID) -> JobInputs:
    """The flow run's record now."""
    return JobInputs.parse(await client.filter_flow_run_input(flow_run_id, PREFIX, MAX_INPUTS, set()))
