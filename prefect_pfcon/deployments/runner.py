"""The embedded runner: claims scheduled runs of our deployments and runs them in-process.

A process worker starts a new Python per flow run (seconds each); this runner executes each
claimed run with Prefect's flow engine on a thread, many at once, so a job step starts within
milliseconds of its creation. The API hands it the runs it creates; other scheduled runs of
its deployments (the Prefect UI's, schedules') are found by polling. Runs handed over in the
Pending state were created for this runner alone and start without a claim.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from uuid import UUID

from cachetools import LRUCache
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.context import SyncClientContext
from prefect.flow_engine import run_flow_sync
from prefect.states import Pending, Scheduled

logger = logging.getLogger("prefect_pfcon.runner")

STARTED_RUNS_KEPT = 10_000  # a run handed over twice (created twice, one run) starts once


class EmbeddedRunner:
    """Polls for scheduled runs of the given deployments and executes them on threads."""

    def __init__(
        self,
        client: PrefectClient,
        flows: dict[UUID, Flow],
        concurrency: int = 16,
        poll_seconds: float = 2.0,
    ) -> None:
        self._client = client
        self._flows = flows
        self._slots = asyncio.Semaphore(concurrency)
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="pfcon-run")
        self._running: set[asyncio.Future[None]] = set()
        self._handed: asyncio.Queue[FlowRun] = asyncio.Queue()
        self._thread_state = threading.local()
        self._started: LRUCache[UUID, bool] = LRUCache(maxsize=STARTED_RUNS_KEPT)
        self._ended_listeners: list[Callable[[FlowRun, State], None]] = []

    def on_run_ended(self, listener: Callable[[FlowRun, State], None]) -> None:
        """Call ``listener(run, final state)``, on the runner's event loop, as each run it
        executed ends (before Prefect's event of it arrives anywhere)."""
        self._ended_listeners.append(listener)

    def hand_over(self, run: FlowRun) -> None:
        """Run this newly created run now (called by the API, on the runner's event loop);
        a Pending run is this runner's already, a Scheduled one is claimed first."""
        if run.deployment_id in self._flows:
            self._handed.put_nowait(run)
            self._wake.set()

    async def recover_interrupted(self) -> int:
        """Reschedule runs a previous runner left pending or running; call before ``run``.

        Only for a single runner per deployment set (the embedded default): re-running a
        plugin run re-attaches to its container instead of starting another.
        """
        stranded = await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING])
                )
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(self._flows))),
        )
        for run in stranded:
            await self._client.set_flow_run_state(
                run.id, Scheduled(message="Rescheduled after a runner restart"), force=True
            )
        return len(stranded)

    async def run(self) -> None:
        """Claim and execute runs until cancelled."""
        try:
            loop = asyncio.get_running_loop()
            next_poll = loop.time()
            while True:
                if loop.time() >= next_poll:
                    await self._claim_due_runs()
                    next_poll = loop.time() + self._poll_seconds
                while not self._handed.empty():
                    await self._claim_and_start(self._handed.get_nowait())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=next_poll - loop.time())
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _claim_due_runs(self) -> None:
        try:
            runs = await self._client.get_scheduled_flow_runs_for_deployments(
                list(self._flows), scheduled_before=datetime.now(timezone.utc)
            )
        except Exception:
            logger.exception("Could not poll the Prefect server for scheduled runs")
            return
        for run in runs:
            await self._claim_and_start(run)

    async def _claim_and_start(self, run: FlowRun) -> None:
        await self._slots.acquire()
        if self._handed_to_us(run) or await self._claim(run):
            self._start(run)
        else:
            self._slots.release()

    def _handed_to_us(self, run: FlowRun) -> bool:
        """A run created Pending for this runner, which it has not started yet."""
        return run.state is not None and run.state.is_pending() and run.id not in self._started

    async def _claim(self, run: FlowRun) -> bool:
        try:
            result = await self._client.set_flow_run_state(run.id, Pending())
        except Exception:
            logger.exception("Could not claim flow run %s", run.id)
            return False
        return result.status is SetStateStatus.ACCEPT

    def _start(self, run: FlowRun) -> None:
        self._started[run.id] = True
        flow = self._flows[run.deployment_id]
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._execute, flow, run)
        self._running.add(future)
        future.add_done_callback(functools.partial(self._finished, run))

    def _finished(self, run: FlowRun, future: asyncio.Future[State | None]) -> None:
        self._running.discard(future)
        self._slots.release()
        final_state = None if future.cancelled() else future.result()
        if final_state is not None:
            for listener in self._ended_listeners:
                listener(run, final_state)

    def _execute(self, flow: Flow, run: FlowRun) -> State | None:
        """Run ``run``; its final state as Prefect accepted it, or ``None`` if it broke off."""
        self._keep_thread_client()
        try:
            return run_flow_sync(flow, flow_run=run, parameters=run.parameters, return_type="state")
        except Exception:
            logger.exception("Flow run %s (%s) ended abnormally", run.name, run.id)
            return None

    def _keep_thread_client(self) -> None:
        """Give this thread one Prefect client for all its runs: the flow and task engines,
        block loads and artifacts reuse it, where each would otherwise build its own (about
        16 ms of CPU each, mostly loading CA certificates, under the API's GIL)."""
        if getattr(self._thread_state, "client_context", None) is None:
            context = SyncClientContext()
            context.__enter__()
            self._thread_state.client_context = context
