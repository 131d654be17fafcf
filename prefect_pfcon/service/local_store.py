"""The embedded service's job store: the job book, with the runner executing what it accepts."""

from __future__ import annotations

from uuid import UUID

from prefect_pfcon.flows.attempts import StepAttempt, StepRequest
from prefect_pfcon.models import JobStep
from prefect_pfcon.service.job_book import JobBook
from prefect_pfcon.service.log_tails import LogTails
from prefect_pfcon.service.runner import JobRunner
from prefect_pfcon.service.store import JobStore


class LocalJobStore(JobStore):
    """Steps recorded in this process's job book and run by its runner: every answer is
    exact and immediate, and none needs Prefect."""

    def __init__(self, book: JobBook, runner: JobRunner, tails: LogTails) -> None:
        self._book = book
        self._runner = runner
        self._tails = tails

    async def newest(self, step: JobStep, jid: str) -> StepAttempt | None:
        return self._book.newest(step, jid)

    async def accept(self, request: StepRequest, after: UUID | None) -> StepAttempt:
        attempt = self._book.accept(request, after)
        if attempt.request is request:
            self._runner.deliver(request)
        return attempt

    async def remove(self, step: JobStep, jid: str) -> StepAttempt | None:
        attempt = self._book.remove(step, jid)
        if attempt is not None and self._runner.plugin_queue is not None:
            self._runner.plugin_queue.leave(attempt.id)
        self._runner.job_removed(jid)
        return attempt

    def plugins_waiting(self) -> int | None:
        queue = self._runner.plugin_queue
        return None if queue is None else len(queue)

    def slots_ahead(self, attempt_id: UUID) -> int | None:
        queue = self._runner.plugin_queue
        return None if queue is None else queue.ahead(attempt_id)

    async def forgotten(self, jid: str) -> bool:
        return self._book.forgotten(jid)

    async def logs(self, attempt: StepAttempt, lines: int) -> str:
        text = self._tails.tail(attempt.id)
        if text is None:
            text = self._book.logs(attempt.request.jid, attempt.id) or ""
        return "".join(text.splitlines(keepends=True)[-lines:])

    async def attempt_removed(self, task_run_id: str) -> bool:
        try:
            return self._book.is_removed(UUID(task_run_id))
        except ValueError:
            return False
