"""The API's in-memory view of each jid's newest runs follows Prefect's event stream.

Against the session's real Prefect server, on step deployments no runner serves (so only this
test changes their runs' states). Reads of Prefect are counted by passing them through a
subclass: once a jid is read, state changes must arrive by events alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Running

from conftest import Service
from prefect_pfcon.deployments.current_runs import CurrentRuns
from prefect_pfcon.deployments.event_stream import follow_step_runs
from prefect_pfcon.deployments.runs import JobRuns
from prefect_pfcon.flows import STEP_FLOWS
from prefect_pfcon.models import CopyJob, JobStep

DEPLOYMENT = "current-runs-test"
HOUR = 3600.0


class CountedJobRuns(JobRuns):
    """``JobRuns`` that counts its reads of a jid's runs."""

    reads = 0

    async def newest_runs(self, jid: str) -> dict[JobStep, FlowRun]:
        self.reads += 1
        return await super().newest_runs(jid)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def follow_a_job() -> None:
    for flow in STEP_FLOWS.values():
        await (await flow.to_deployment(name=DEPLOYMENT)).apply()
    async with get_client() as client:
        runs = CountedJobRuns(client, DEPLOYMENT)
        current = CurrentRuns(runs, active_max_age=HOUR, idle_max_age=HOUR)
        subscribed = asyncio.Event()
        ids = [(await runs.deployment(step)).id for step in JobStep]
        follower = asyncio.create_task(follow_step_runs(ids, current.apply, subscribed.set))
        try:
            await asyncio.wait_for(subscribed.wait(), 60)
            jid = f"events-{uuid.uuid4().hex[:8]}"
            assert await current.newest(JobStep.COPY, jid) is None
            assert runs.reads == 1
            parameters = {"job": CopyJob(jid=jid, input_dirs=["in"], output_dir="out").model_dump(mode="json")}
            run = await runs.create(JobStep.COPY, jid, parameters, None, [], pending=True)
            current.record(JobStep.COPY, jid, run)

            async def shows(state_type: StateType, run_id: uuid.UUID) -> bool:
                newest = await current.newest(JobStep.COPY, jid)
                return newest is not None and newest.id == run_id and newest.state.type is state_type

            await eventually(lambda: shows(StateType.PENDING, run.id))
            reads = runs.reads
            await client.set_flow_run_state(run.id, Running())
            await eventually(lambda: shows(StateType.RUNNING, run.id))
            await client.set_flow_run_state(run.id, Completed())
            await eventually(lambda: shows(StateType.COMPLETED, run.id))
            assert runs.reads == reads  # heard, not read
            finished = await current.newest(JobStep.COPY, jid)
            assert finished is not None and finished.start_time and finished.end_time

            # a run created elsewhere (the Prefect UI, say) is read when heard of
            other = await client.create_flow_run_from_deployment(
                ids[0], parameters=parameters, name=f"copy-{jid}", idempotency_key=str(uuid.uuid4())
            )
            await eventually(lambda: shows(StateType.SCHEDULED, other.id))
            assert runs.reads > reads
        finally:
            follower.cancel()


def test_view_follows_the_event_stream(fslink_service: Service):
    with temporary_settings(updates={PREFECT_API_URL: fslink_service.prefect_api_url}):
        asyncio.run(follow_a_job())
