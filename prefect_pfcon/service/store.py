"""Where the service keeps its jobs' steps: the interface the job service works against."""

from __future__ import annotations

from abc import ABC, abstractmethod
from uuid import UUID

from prefect_pfcon.flows.attempts import StepAttempt, StepRequest
from prefect_pfcon.models import JobStep


class JobStore(ABC):
    """The steps of every job: accepted, run, removed."""

    @abstractmethod
    async def newest(self, step: JobStep, jid: str) -> StepAttempt | None:
        """The newest attempt of (jid, step), removed or not."""

    @abstractmethod
    async def accept(self, request: StepRequest, after: UUID | None) -> StepAttempt:
        """Accept ``request`` and have it run, unless another attempt of its step was accepted
        since ``after`` (the newest the caller saw): then that one."""

    @abstractmethod
    async def remove(self, step: JobStep, jid: str) -> StepAttempt | None:
        """Mark the newest attempt of (jid, step) removed; it, or ``None``."""

    @abstractmethod
    async def forgotten(self, jid: str) -> bool:
        """Whether clients DELETEd every step of ``jid``."""

    @abstractmethod
    async def logs(self, attempt: StepAttempt, lines: int) -> str:
        """The attempt's last ``lines`` log lines."""

    @abstractmethod
    async def attempt_removed(self, task_run_id: str) -> bool:
        """Whether a client DELETE removed the attempt (an unknown one is not)."""

    def plugins_waiting(self) -> int | None:
        """How many accepted plugins wait for a slot; ``None``: not known here."""
        return None

    def slots_ahead(self, attempt_id: UUID) -> int | None:
        """How many plugins wait for a slot before this attempt; ``None`` if it does not wait
        (or it is not known here)."""
        return None
