"""Runs of the service's deployments that the Prefect UI or a schedule created: claimed
here and executed in this process (the embedded default needs no worker).

The runner hears of each new scheduled run on Prefect's event stream (``ScheduledRunEvents``)
and also polls, slowly, for any it missed. Each runs on a thread of its own (never the main thread: Prefect's flow engine takes over
SIGTERM there), an async flow (the job flow) on its own event loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.flow_engine import run_flow_async, run_flow_sync
from prefect.states import Pending, Scheduled

from prefect_pfcon.service.loops import LoopService

logger = logging.getLogger("prefect_pfcon.deployment_runs")


def _run_flow(flow: Flow, run: FlowRun) -> None:
    if flow.isasync:
        asyncio.run(run_flow_async(flow, flow_run=run, parameters=run.parameters, return_type="state"))
    else:
        run_flow_sync(flow, flow_run=run, parameters=run.parameters, return_type="state")


class DeploymentRuns(LoopService):
    """Polls for scheduled runs of the given deployments and executes them, at most
    ``concurrency`` at once."""

    def __init__(self, client: PrefectClient, flows: dict[UUID, Flow], concurrency: int = 16,
                 poll_seconds: float = 2.0) -> None:
        super().__init__(poll_seconds)
        self._client = client
        self._flows = flows
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    async def recover_interrupted(self) -> int:
        """Reschedule runs a previous process left pending or running; call before ``start``."""
        stranded = await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING]))
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(self._flows))),
        )
        for run in stranded:
            await self._client.set_flow_run_state(run.id, Scheduled(message="Rescheduled after a restart"), force=True)
        return len(stranded)

    async def run_once(self) -> None:
        runs = await self._client.get_scheduled_flow_runs_for_deployments(
            list(self._flows), scheduled_before=datetime.now(timezone.utc)
        )
        for run in runs:
            await self._slots.acquire()
            if await self._claim(run):
                task = asyncio.create_task(self._execute(run))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            else:
                self._slots.release()

    async def stop(self) -> None:
        """Stop the runs in progress (they are rescheduled at the next start)."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _claim(self, run: FlowRun) -> bool:
        try:
            result = await self._client.set_flow_run_state(run.id, Pending())
        except Exception:
            logger.exception("Could not claim flow run %s", run.id)
            return False
        return result.status is SetStateStatus.ACCEPT

    async def _execute(self, run: FlowRun) -> None:
        flow = self._flows[run.deployment_id]
        try:
            await asyncio.to_thread(_run_flow, flow, run)
        except Exception:
            logger.exception("Flow run %s (%s) ended abnormally", run.name, run.id)
        finally:
            self._slots.release()


class ScheduledRunEvents(LoopService):
    """Has ``runs`` look for due runs whenever Prefect reports one of their deployments' runs
    Scheduled (and once per subscription); subscribes again after a lost stream."""

    def __init__(self, runs: DeploymentRuns, deployment_ids: list[UUID], resubscribe_seconds: float = 5.0) -> None:
        super().__init__(resubscribe_seconds)
        self._runs = runs
        self._filter = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.Scheduled"]),
            related=EventRelatedFilter(id=[f"prefect.deployment.{id_}" for id_ in deployment_ids]),
        )

    async def run_once(self) -> None:
        async with get_events_subscriber(filter=self._filter) as events:
            await self._runs.run_once()
            async for _ in events:
                await self._runs.run_once()
