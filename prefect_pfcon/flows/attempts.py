"""A step a client posted, as the job flow receives it, and how far it got."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from uuid import UUID, uuid4

from prefect.client.schemas.objects import State, StateType
from prefect.states import Scheduled

from prefect_pfcon.models import JobStep
from prefect_pfcon.names import step_run_name

ACCEPTED_MESSAGE = "Accepted; waiting for its job's flow run"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class StepRequest:
    """One posted step: its parameters (``{"job": ...}``, env values sealed) and tags.

    ``key`` is also the id of the task run that executes it, so a retry after a restart
    continues the same task run.
    """

    step: JobStep
    jid: str
    parameters: dict[str, Any]
    tags: list[str]
    key: UUID = field(default_factory=uuid4)
    accepted: datetime = field(default_factory=_now)

    @property
    def name(self) -> str:
        """The task run's name, ``<step>-<jid>``."""
        return step_run_name(self.step, self.jid)

    def to_json(self) -> str:
        """The request as stored or sent."""
        return json.dumps({"step": self.step.value, "jid": self.jid, "parameters": self.parameters,
                           "tags": self.tags, "key": str(self.key), "accepted": self.accepted.isoformat()})

    @classmethod
    def from_json(cls, text: str) -> StepRequest:
        """A stored or received request."""
        data = json.loads(text)
        return cls(step=JobStep(data["step"]), jid=data["jid"], parameters=data["parameters"],
                   tags=data["tags"], key=UUID(data["key"]), accepted=datetime.fromisoformat(data["accepted"]))


@dataclass(frozen=True)
class StepAttempt:
    """A request and its Prefect state so far; ``removed`` once a client DELETEd it."""

    request: StepRequest
    state: State
    start_time: datetime | None = None
    end_time: datetime | None = None
    removed: bool = False

    @classmethod
    def accepted(cls, request: StepRequest) -> StepAttempt:
        """A request no task run has taken yet."""
        return cls(request, Scheduled(message=ACCEPTED_MESSAGE, timestamp=request.accepted))

    @property
    def id(self) -> UUID:
        """The attempt's task run id."""
        return self.request.key

    @property
    def parameters(self) -> dict[str, Any]:
        """The step's parameters."""
        return self.request.parameters

    @property
    def is_open(self) -> bool:
        """Whether it is still to run (or running) for the client."""
        return not self.removed and not self.state.is_final()

    def entered(self, state: State) -> StepAttempt:
        """The attempt after entering ``state``, with the start and end times Prefect gives it."""
        start_time = self.start_time or (state.timestamp if state.type is StateType.RUNNING else None)
        end_time = state.timestamp if state.is_final() else None
        return replace(self, state=state, start_time=start_time, end_time=end_time)
