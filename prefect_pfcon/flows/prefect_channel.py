"""How a job's flow run on a work pool hears of the steps clients post: through Prefect.

A worker runs the flow run far from the API replicas, so the steps travel through the Prefect
server both share, without the flow run polling it:

* Each accepted step is a **flow-run input** of the job's flow run (``step_inputs``): durable
  in Prefect's database, written once (a unique key per step and predecessor), readable by
  every replica, and gone with the run.
* After writing one the API **emits an event** about the flow run. The flow run subscribes to
  the events of its own resource (Prefect's event websocket, which backfills what it missed
  on a reconnect), and reads its inputs on start, after each (re)subscription and on each
  event: a step starts about as soon as it is posted, and an idle job costs Prefect nothing
  but one open websocket. A slow re-read every ``RESYNC_SECONDS`` covers an event lost with
  a server.
* The flow run records each step's start and final state as inputs too: status answers read
  them at once, while Prefect's task-run rows, written from events, may lag; the final state
  is written after the step's logs reached Prefect, so a finished status never comes before
  its logs.

A served flow run holds a slot of its work pool (a worker process, a container, a pod) while
it waits for the job's next step. It ends when the delete step completes (CUBE posts one when
it is done with a job), when clients DELETE every step, or after ``idle_seconds`` without a
step (the API passes ``PFCON_JOB_IDLE_SECONDS``, 7 days by default). Sites bound the slots
with that setting and with the pool's concurrency limit (``prefect work-pool
set-concurrency-limit``): jobs beyond it wait Scheduled, their steps ``notStarted``.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.events.clients import get_events_subscriber

from prefect_pfcon.flows.channels import JobEnd, StepChannel
from prefect_pfcon.flows.attempts import StepRequest
from prefect_pfcon.flows.step_inputs import (
    ended_key,
    events_of,
    read_job_inputs,
    removed_key,
    started_key,
    state_json,
)

logger = logging.getLogger("prefect_pfcon.flows")

RESYNC_SECONDS = 300.0
"""How often an idle flow run reads its inputs without an event (a lost event's cost)."""
RESUBSCRIBE_SECONDS = 5.0
"""The pause before subscribing again after the event stream failed."""
EXISTS = 409


class PrefectChannel(StepChannel):
    """The steps of the job ``jid`` from the inputs of its flow run ``flow_run_id``."""

    def __init__(self, flow_run_id: UUID, jid: str, resync_seconds: float = RESYNC_SECONDS) -> None:
        self._flow_run_id = UUID(str(flow_run_id))
        self._jid = jid
        self._resync_seconds = resync_seconds
        self._taken: set[UUID] = set()
        self._wake = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    async def next_request(self, idle_seconds: float) -> StepRequest | JobEnd:
        loop = asyncio.get_running_loop()
        if self._listener is None:
            self._listener = loop.create_task(self._listen())
        deadline = loop.time() + idle_seconds
        while True:
            self._wake.clear()
            async with get_client() as client:
                inputs = await read_job_inputs(client, self._flow_run_id)
            if inputs.forgotten:
                return self._end(JobEnd("Clients DELETEd all of the job's steps", cancelled=True))
            waiting = [request for request in inputs.to_run() if request.key not in self._taken]
            if waiting:
                self._taken.add(waiting[0].key)
                return waiting[0]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return self._end(JobEnd(f"No step was posted for {idle_seconds:g} s", cancelled=True))
            try:
                await asyncio.wait_for(self._wake.wait(), min(remaining, self._resync_seconds))
            except TimeoutError:
                pass

    def started(self, request: StepRequest, state: State) -> None:
        self._write(started_key(request.key), state_json(state))

    ships_logs_per_step = True  # the API replicas read a step's logs from Prefect

    def ended(self, request: StepRequest, state: State) -> None:
        """Record the final state; ``run_step`` has shipped the step's logs by now."""
        self._write(ended_key(request.key), state_json(state))

    def removed(self, request: StepRequest) -> bool:
        with get_client(sync_client=True) as client:
            try:
                client.read_flow_run_input(self._flow_run_id, removed_key(request.key))
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 404:
                    return False
                raise
        return True

    def _write(self, key: str, value: str) -> None:
        """Add an input (one already there, from before a restart of the run, stays)."""
        with get_client(sync_client=True) as client:
            try:
                client.create_flow_run_input(self._flow_run_id, key, value)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != EXISTS:
                    raise

    async def _listen(self) -> None:
        """Wake ``next_request`` on each event about the flow run and after each subscription."""
        while True:
            try:
                async with get_events_subscriber(filter=events_of(self._flow_run_id)) as subscriber:
                    self._wake.set()
                    async for _event in subscriber:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("The event stream of job %s failed (%s); subscribing again", self._jid, exc)
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _end(self, end: JobEnd) -> JobEnd:
        if self._listener is not None:
            self._listener.cancel()
        return end
