"""Creating the flow runs of accepted job steps: right away, or from the outbox.

With an outbox (the embedded default: one process owns its runs), ``submit`` returns once the
request is on disk, and the run is created in the background, retried until Prefect takes
it, and handed to the runner. Without one (API replicas, runs on a work pool), ``submit``
returns once the run exists.

Prefect refusing a request itself (a 4xx: parameters it will never take, say) ends it: the
request leaves the outbox and its job step reads as failed, with Prefect's reason, until the
next request for it or a client DELETE. Parameters over Prefect's size limit are refused
before anything is accepted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from anyio import to_thread
from cachetools import LRUCache
from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Failed

from prefect_pfcon.deployments.current_runs import CurrentRuns
from prefect_pfcon.deployments.outbox import Outbox, RunRequest
from prefect_pfcon.deployments.runs import JobRuns, RunRefused, check_parameter_size
from prefect_pfcon.models import JobStep

logger = logging.getLogger("prefect_pfcon.publisher")

FIRST_RETRY_SECONDS = 0.5
LAST_RETRY_SECONDS = 30.0
REFUSALS_KEPT = 1000


class RunPublisher:
    """Turns ``RunRequest``s into flow runs, each exactly once."""

    def __init__(
        self,
        runs: JobRuns,
        current: CurrentRuns,
        outbox: Outbox | None = None,
        hand_over: Callable[[FlowRun], None] | None = None,
    ) -> None:
        self._runs = runs
        self._current = current
        self._outbox = outbox
        self._hand_over = hand_over
        self._waiting: dict[tuple[JobStep, str], RunRequest] = {}
        self._published: dict[tuple[JobStep, str], asyncio.Event] = {}
        self._refused: LRUCache[tuple[JobStep, str], tuple[RunRequest, State]] = LRUCache(REFUSALS_KEPT)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> int:
        """Publish what a previous process accepted and did not create; how many."""
        if self._outbox is None:
            return 0
        leftovers = self._outbox.requests()
        for request in leftovers:
            self._hold(request)
            self._spawn(request, self._outbox)
        return len(leftovers)

    def waiting(self, step: JobStep, jid: str) -> RunRequest | None:
        """The accepted request of (jid, step) whose run does not exist yet, if any."""
        return self._waiting.get((step, jid))

    def refused(self, step: JobStep, jid: str) -> tuple[RunRequest, State] | None:
        """The newest request of (jid, step) if Prefect refused it, and its failed state."""
        return self._refused.get((step, jid))

    def forget_refused(self, step: JobStep, jid: str) -> None:
        """Drop the refused request of (jid, step), if any (a client DELETE)."""
        self._refused.pop((step, jid), None)

    async def submit(self, request: RunRequest) -> None:
        """Accept ``request``: durably (with an outbox), else by creating its run now. A
        request for a (jid, step) that already has one waiting is the same job step.

        Raises ``ParametersTooLarge`` before accepting anything, and ``RunRefused`` (without
        an outbox) when Prefect refuses the run.
        """
        check_parameter_size(request.parameters)
        self.forget_refused(request.step, request.jid)
        if self._outbox is None:
            await self._create(request)
            return
        if self.waiting(request.step, request.jid) is not None:
            return
        self._hold(request)  # before the write: a concurrent submit sees it waiting
        try:
            await to_thread.run_sync(self._outbox.add, request)
        except BaseException:
            self._release(request)
            raise
        self._spawn(request, self._outbox)

    async def settled(self, step: JobStep, jid: str) -> None:
        """Wait until (jid, step) has no request waiting for its run."""
        while (event := self._published.get((step, jid))) is not None:
            await event.wait()

    async def stop(self) -> None:
        """Stop publishing; what is left stays in the outbox for the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _hold(self, request: RunRequest) -> None:
        self._waiting[(request.step, request.jid)] = request
        self._published[(request.step, request.jid)] = asyncio.Event()

    def _release(self, request: RunRequest) -> None:
        del self._waiting[(request.step, request.jid)]
        self._published.pop((request.step, request.jid)).set()

    def _spawn(self, request: RunRequest, outbox: Outbox) -> None:
        task = asyncio.create_task(self._publish(request, outbox))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, request: RunRequest, outbox: Outbox) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                await self._create(request)
                break
            except RunRefused as exc:
                logger.warning("Prefect refused the %s run of %s: %s", request.step.value, request.jid, exc)
                self._refused[(request.step, request.jid)] = (request, Failed(message=str(exc)))
                break
            except Exception as exc:
                logger.warning("Could not create the %s run of %s yet (%s); retrying",
                               request.step.value, request.jid, exc or type(exc).__name__)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(2 * delay, LAST_RETRY_SECONDS)
        try:
            await to_thread.run_sync(outbox.remove, request.key)
        finally:
            self._release(request)  # the run exists or never will (a request left behind yields it again)

    async def _create(self, request: RunRequest) -> None:
        run = await self._runs.create(
            request.step,
            request.jid,
            request.parameters,
            request.after,
            request.extra_tags,
            pending=self._hand_over is not None,
        )
        self._current.record(request.step, request.jid, run)
        if self._hand_over is not None:
            self._hand_over(run)
