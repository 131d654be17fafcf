"""The embedded runner: each API job's flow run, executed in this process.

A job's flow run is made when its first step is accepted and runs on the runner's own event
loop (a thread beside the API's: Prefect's flow engine takes over SIGTERM in the main thread),
waiting there at no cost between steps; its steps run on the runner's step threads, at most
``concurrency`` at once. A job whose flow run was cut short by a stop is picked up again at
start: the same flow run is rescheduled and run again, and the steps it had not finished run
as the same task runs (a plugin re-attaches to its container).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import FlowRunCreate
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import SyncClientContext
from prefect.exceptions import ObjectNotFound
from prefect.flow_engine import run_flow_async
from prefect.states import Crashed, Failed, Pending, Scheduled, to_state_create

from prefect_pfcon.flows.channels import register_local_channel, unregister_local_channel
from prefect_pfcon.flows.job import job_flow
from prefect_pfcon.flows.attempts import StepRequest
from prefect_pfcon.models import JobStep
from prefect_pfcon.names import job_run_name, job_tags
from prefect_pfcon.service.job_book import JobBook
from prefect_pfcon.service.local_channel import LocalChannel
from prefect_pfcon.service.log_tails import LogTails
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.service.plugin_queue import PluginQueue
from prefect_pfcon.service.prefect_calls import RunRefused, with_retries

logger = logging.getLogger("prefect_pfcon.runner")
T = TypeVar("T")

RESTARTED_MESSAGE = "Rescheduled after a restart of prefect-pfcon"
SERVED_JOB_FLOW = job_flow.with_options()
SERVED_JOB_FLOW.flow_run_name = None  # the runner names each run when it makes it: no rename request


class JobRunner:
    """Runs the flow runs of the jobs the API accepts, handing each the steps of its job."""

    def __init__(
        self,
        book: JobBook,
        tails: LogTails,
        flow_parameters: dict[str, Any],
        metrics: ServiceMetrics,
        concurrency: int = 16,
        queue_plugins: bool = False,
    ) -> None:
        self._book = book
        self._tails = tails
        self._flow_parameters = flow_parameters
        self._metrics = metrics
        self._concurrency = concurrency
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="pfcon-step",
                                            initializer=self._keep_thread_client)
        self._thread_clients = threading.local()
        self._channels: dict[str, LocalChannel] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pfcon-runner", daemon=True)
        self._client: PrefectClient | None = None
        self._flow_id: UUID | None = None
        self._slots: asyncio.Semaphore | None = None
        self.plugin_queue = PluginQueue(self._loop) if queue_plugins else None
        """With a limit on running plugins: those waiting for a slot, in arrival order."""

    def start(self) -> int:
        """Start the runner's loop and run again the jobs a previous process left open;
        how many there were."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    def deliver(self, request: StepRequest) -> None:
        """Run an accepted step in its job's flow run (made now if the job has none open); a
        plugin queues for a slot from now."""
        if self.plugin_queue is not None and request.step is JobStep.PLUGIN:
            self.plugin_queue.join(request.key)
        self._loop.call_soon_threadsafe(self._deliver, request)

    def job_removed(self, jid: str) -> None:
        """A client DELETEd one of the job's steps: its flow run looks whether all are."""
        self._loop.call_soon_threadsafe(self._wake, jid)

    async def stop(self) -> None:
        """Stop every flow run here; they stay open in the book for the next start."""
        if self._thread.is_alive():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(), self._loop))
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _start(self) -> int:
        self._slots = asyncio.Semaphore(self._concurrency)
        self._client = get_client()
        await self._client.__aenter__()
        self._flow_id = await self._with_retries(lambda: self.client.create_flow(job_flow))
        open_jobs = self._book.open_jobs()
        for jid, (flow_run_id, requests) in open_jobs.items():
            channel = self._open(jid, flow_run_id)
            for request in requests:
                if self.plugin_queue is not None and request.step is JobStep.PLUGIN:
                    self.plugin_queue.join(request.key, waits=False)
                channel.put(request)
        return len(open_jobs)

    async def _stop(self) -> None:
        for run in self._runs:
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        if self._client is not None:
            await self._client.__aexit__(None, None, None)

    def _deliver(self, request: StepRequest) -> None:
        channel = self._channels.get(request.jid)
        if channel is None or not channel.accepting:
            channel = self._open(request.jid, None)
        channel.put(request)

    def _wake(self, jid: str) -> None:
        channel = self._channels.get(jid)
        if channel is not None:
            channel.wake()

    def _open(self, jid: str, flow_run_id: UUID | None) -> LocalChannel:
        assert self._slots is not None, "start() first"
        channel = LocalChannel(self._book, self._tails, jid, self._executor, self._slots, self._metrics,
                               self.plugin_queue)
        self._channels[jid] = channel
        self._book.job_opened(jid)
        run = self._loop.create_task(self._run_job(jid, channel, flow_run_id), context=contextvars.Context())
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        return channel

    @property
    def client(self) -> PrefectClient:
        """The runner loop's Prefect client."""
        assert self._client is not None, "start() first"
        return self._client

    async def _run_job(self, jid: str, channel: LocalChannel, flow_run_id: UUID | None) -> None:
        try:
            run = await self._flow_run(jid, flow_run_id)
        except RunRefused as exc:
            logger.warning("Prefect refused the flow run of job %s: %s", jid, exc)
            self._metrics.prefect_error("runner", exc)
            for request in channel.close():
                self._entered_final(request, Failed(message=str(exc)))
            self._closed(jid, channel, [])
            return
        self._book.job_started(jid, run.id)
        register_local_channel(run.id, channel)
        try:
            await run_flow_async(SERVED_JOB_FLOW, flow_run=run, parameters=run.parameters, return_type="state")
        except Exception:
            logger.exception("The flow run of job %s ended abnormally", jid)
        finally:
            unregister_local_channel(run.id)
        left = channel.close()
        for request in self._book.unfinished(jid):  # a step cut short by a broken flow run
            if request.key not in {queued.key for queued in left}:
                self._entered_final(request, Crashed(message="Its job's flow run ended before it did"))
        self._closed(jid, channel, left)

    def _entered_final(self, request: StepRequest, state: State) -> None:
        """A step that did not end in its flow run ended here, in ``state``."""
        self._metrics.step_finished(request, state.type.value)
        self._book.enter(request, state)
        if self.plugin_queue is not None:
            self.plugin_queue.leave(request.key)

    def _closed(self, jid: str, channel: LocalChannel, left: list[StepRequest]) -> None:
        """The job's flow run is over; steps posted meanwhile (``left``) go to a new one."""
        if self._channels.get(jid) is channel:
            del self._channels[jid]
        self._book.job_ended(jid)
        for request in left:
            self._deliver(request)

    async def _flow_run(self, jid: str, flow_run_id: UUID | None) -> FlowRun:
        """The job's flow run: the one a stop cut short (left running, or marked Crashed by
        Prefect's engine as it was stopped), rescheduled, else a new one."""
        if flow_run_id is not None:
            try:
                run = await self._with_retries(lambda: self.client.read_flow_run(flow_run_id))
            except ObjectNotFound:
                run = None
            if run is not None and run.state is not None and (not run.state.is_final() or run.state.is_crashed()):
                for state in (Scheduled(message=RESTARTED_MESSAGE), Pending()):
                    await self._with_retries(lambda: self.client.set_flow_run_state(run.id, state, force=True))
                return await self._with_retries(lambda: self.client.read_flow_run(run.id))
        return await self._with_retries(lambda: self._create_flow_run(jid))

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """``with_retries``, each error it retries counted in the metrics."""
        return await with_retries(call, retried=partial(self._metrics.prefect_error, "runner"))

    async def _create_flow_run(self, jid: str) -> FlowRun:
        """A new flow run of the job, Pending for this runner (the flow's id is registered once,
        at start, where ``create_flow_run`` would ask for it each time)."""
        assert self._flow_id is not None, "start() first"
        created = FlowRunCreate(
            flow_id=self._flow_id,
            name=job_run_name(jid),
            parameters={"jid": jid, **self._flow_parameters},
            tags=job_tags(jid),
            state=to_state_create(Pending()),
        )
        response = await self.client.request("POST", "/flow_runs/", json=created.model_dump(mode="json"))
        return FlowRun.model_validate(response.json())

    def _keep_thread_client(self) -> None:
        """Give each step thread one Prefect client for all its steps: the task engine, block
        loads and artifacts reuse it, where each would otherwise build its own (about 16 ms of
        CPU each, mostly loading CA certificates, under the API's GIL)."""
        context = SyncClientContext()
        context.__enter__()
        self._thread_clients.context = context
