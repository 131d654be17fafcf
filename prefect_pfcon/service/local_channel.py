"""The embedded service's channel to a job's flow run: steps handed over in memory."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from prefect.client.schemas.objects import State

from prefect_pfcon.flows.channels import JobEnd, StepChannel
from prefect_pfcon.flows.attempts import StepRequest
from prefect_pfcon.service.job_book import JobBook
from prefect_pfcon.service.log_tails import LogTails
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.service.plugin_queue import PluginQueue

T = TypeVar("T")


class LocalChannel(StepChannel):
    """The steps of one job, put here by the runner as clients post them; their progress is
    written to the job book (and their log lines kept) as they run."""

    def __init__(self, book: JobBook, tails: LogTails, jid: str, executor: Executor, slots: asyncio.Semaphore,
                 metrics: ServiceMetrics, plugin_queue: PluginQueue | None = None) -> None:
        self._book = book
        self._tails = tails
        self._jid = jid
        self._executor = executor
        self._slots = slots
        self._metrics = metrics
        self._plugin_queue = plugin_queue
        self._queue: asyncio.Queue[StepRequest | None] = asyncio.Queue()
        self.accepting = True

    def put(self, request: StepRequest) -> None:
        """Queue a step for the flow run."""
        self._queue.put_nowait(request)

    def wake(self) -> None:
        """Have the flow run look again whether its job was DELETEd."""
        self._queue.put_nowait(None)

    def close(self) -> list[StepRequest]:
        """Take no more steps; the ones queued and not taken."""
        self.accepting = False
        left: list[StepRequest] = []
        while not self._queue.empty():
            if (request := self._queue.get_nowait()) is not None:
                left.append(request)
        return left

    async def next_request(self, idle_seconds: float) -> StepRequest | JobEnd:
        while True:
            try:
                request = await asyncio.wait_for(self._queue.get(), idle_seconds)
            except TimeoutError:
                self.accepting = False
                return JobEnd(f"No step was posted for {idle_seconds:g} s", cancelled=True)
            if request is None:
                if self._book.forgotten(self._jid):
                    self.accepting = False
                    return JobEnd("Clients DELETEd all of the job's steps", cancelled=True)
                continue
            attempt = self._book.attempt(self._jid, request.key)
            if attempt is not None and attempt.is_open:  # else removed or replaced before it ran
                return request
            self._left_queue(request)

    def started(self, request: StepRequest, state: State) -> None:
        self._tails.watch(request.key)
        self._book.enter(request, state)

    def ended(self, request: StepRequest, state: State) -> None:
        self._metrics.step_finished(request, state.type.value)  # counted before a status answer can show it
        self._book.enter(request, state, logs=self._tails.finish(request.key))
        self._left_queue(request)

    def slot_taken(self, request: StepRequest) -> None:
        self._left_queue(request)

    def _left_queue(self, request: StepRequest) -> None:
        if self._plugin_queue is not None:
            self._plugin_queue.leave(request.key)

    def removed(self, request: StepRequest) -> bool:
        return self._book.is_removed(request.key)

    async def run_in_thread(self, request: StepRequest, work: Callable[[], T]) -> T:
        """Run ``work`` on one of the runner's step threads, at most as many at once as it has
        (the step counts as running, in the metrics, while it has one); a queued plugin first
        waits, without a thread, until it is the head of the queue."""
        context = contextvars.copy_context()
        if self._plugin_queue is not None:
            await self._plugin_queue.turn(request.key)
        async with self._slots:
            with self._metrics.step_running(request):
                return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, work)
