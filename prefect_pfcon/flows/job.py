"""The one pfcon job flow: a job's steps, each a task run, in one flow run ``job-<jid>``.

A job the pfcon API drives is served: its flow run stays open and runs each step a client
posts as it comes (``StepChannel``), until the delete step completes, clients DELETE all of it,
or no step came for ``idle_seconds``. A whole job given up front (the Prefect UI, schedules,
reprocessing) runs copy → plugin → upload → cleanup, as the same tasks, and returns.
"""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import Any

from prefect import flow, tags
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed, Running
from prefect.task_engine import run_task_sync

from prefect_pfcon.blocks import load_compute, load_storage
from prefect_pfcon.blocks.storage import StorageBlock
from prefect_pfcon.flows.channels import JobEnd, ListedSteps, StepChannel, local_channel
from prefect_pfcon.flows.logs import logs_shipped_on_exit
from prefect_pfcon.flows.tag_limits import drain_tag_limit_service
from prefect_pfcon.flows.attempts import StepRequest
from prefect_pfcon.flows.results import UNPERSISTED_RESULTS
from prefect_pfcon.job_secrets import seal
from prefect_pfcon.models import ChrisJob, CopyJob, DeleteJob, JobStep, PluginJob, UploadJob
from prefect_pfcon.names import (
    DEFAULT_COMPUTE_BLOCK,
    DEFAULT_STORAGE_BLOCK,
    JOB_FLOW_NAME,
    job_run_name,
    plugin_tags,
    step_tags,
)
from prefect_pfcon.tasks.steps import STEP_TASKS

IDLE_SECONDS = 7 * 24 * 3600.0
STEP_MODELS = {JobStep.COPY: CopyJob, JobStep.PLUGIN: PluginJob, JobStep.UPLOAD: UploadJob, JobStep.DELETE: DeleteJob}


def _run_name() -> str:
    parameters = flow_run.parameters
    job = parameters.get("job") or {}
    jid = parameters.get("jid") or (job.get("jid") if isinstance(job, dict) else getattr(job, "jid", None))
    return job_run_name(jid or str(flow_run.id)[:13])


@flow(name=JOB_FLOW_NAME, flow_run_name=_run_name, **UNPERSISTED_RESULTS)
async def job_flow(
    job: ChrisJob | None = None,
    jid: str | None = None,
    storage_block: str = DEFAULT_STORAGE_BLOCK,
    compute_block: str = DEFAULT_COMPUTE_BLOCK,
    cleanup: bool = True,
    idle_seconds: float = IDLE_SECONDS,
) -> dict[str, Any] | State:
    """Run a ChRIS plugin on data in the storage: copy → plugin → upload → cleanup.

    Give ``job`` to run a whole job now; steps the storage does not need are skipped (fslink
    needs no upload, filesystem no copy) and outputs end in ``output_dir``. Without ``job``
    the run serves the steps the pfcon API is posting for ``jid``.

    Args:
        job: The plugin, its inputs and where its outputs go (a whole job).
        jid: The job a pfcon client drives (set by the API; leave empty with ``job``).
        storage_block: Name of the storage block (e.g. pfcon-storage).
        compute_block: Name of the compute block (e.g. pfcon-compute).
        cleanup: Remove the job's scratch dir (key-<jid>) once a whole job succeeded.
        idle_seconds: A served job ends Cancelled when no step came for this long.
    """
    if job is not None:
        return await _whole_job(job, storage_block, compute_block, cleanup)
    if not jid:
        raise ValueError("Give either job (a whole job) or jid (a job the pfcon API drives)")
    return await serve_steps(_channel_of_this_run(jid), storage_block, compute_block, idle_seconds)


def _channel_of_this_run(jid: str) -> StepChannel:
    """This process's channel for the run, else Prefect's (a run on a work pool)."""
    channel = local_channel(flow_run.id)
    if channel is not None:
        return channel
    from prefect_pfcon.flows.prefect_channel import PrefectChannel  # only on work pools

    return PrefectChannel(flow_run.id, jid)


async def serve_steps(channel: StepChannel, storage_block: str, compute_block: str, idle_seconds: float) -> State:
    """Run the channel's steps as they come; the flow run's final state."""
    while True:
        request = await channel.next_request(idle_seconds)
        if isinstance(request, JobEnd):
            return Cancelled(message=request.message) if request.cancelled else Completed(message=request.message)
        state = await run_step(channel, request, storage_block, compute_block)
        if request.step is JobStep.DELETE and state.is_completed():
            return Completed(message="The job's data was deleted")


async def run_step(channel: StepChannel, request: StepRequest, storage_block: str, compute_block: str) -> State:
    """Run one step as its task run (id ``request.key``); its final state, also when the
    blocks cannot be loaded."""

    def execute() -> State:
        with logs_shipped_on_exit() if channel.ships_logs_per_step else nullcontext():
            parameters = step_parameters(channel, request, load_storage(storage_block), compute_block)
            step_task = STEP_TASKS[request.step]
            with tags(*request.tags):
                try:
                    return run_task_sync(step_task, task_run_id=request.key, parameters=parameters,
                                         return_type="state")
                finally:
                    drain_tag_limit_service(step_task)

    channel.started(request, Running())
    try:
        state = await channel.run_in_thread(request, execute)
    except Exception as exc:
        state = Failed(message=f"{type(exc).__name__}: {exc}")
    channel.ended(request, state)
    return state


def step_parameters(
    channel: StepChannel, request: StepRequest, storage: StorageBlock, compute_block: str
) -> dict[str, Any]:
    """The step task's parameters: its blocks and its job model."""
    parameters: dict[str, Any] = {
        "storage": storage,
        "job": STEP_MODELS[request.step].model_validate(request.parameters["job"]),
    }
    if request.step is JobStep.PLUGIN:
        parameters.update(compute=load_compute(compute_block), flow_run_id=str(flow_run.id),
                          task_run_id=str(request.key), removed=lambda: channel.removed(request),
                          slot_taken=lambda: channel.slot_taken(request))
    return parameters


def _request(step: JobStep, job: Any, tags: list[str] | None = None) -> StepRequest:
    return StepRequest(step=step, jid=job.jid, parameters={"job": job.model_dump(mode="json")},
                       tags=tags or step_tags(step, job.jid))


async def _whole_job(job: ChrisJob, storage_block: str, compute_block: str, cleanup: bool) -> dict[str, Any]:
    storage = await asyncio.to_thread(load_storage, storage_block)
    if storage.requires_data_file:
        raise ValueError(f"{storage.storage_env} storage takes its inputs as an uploaded zip; use in-network storage")
    jid = job.jid or f"job-{str(flow_run.id)[:13]}"
    compute = await asyncio.to_thread(load_compute, compute_block)
    plugin_job = job.plugin_job(jid)
    steps = []
    if storage.requires_copy_job:
        steps.append(_request(JobStep.COPY, CopyJob(jid=jid, input_dirs=job.input_dirs, output_dir=job.output_dir)))
    steps.append(_request(JobStep.PLUGIN, seal(plugin_job), plugin_tags(plugin_job, compute.container_env)))
    if storage.requires_upload_job:
        steps.append(_request(JobStep.UPLOAD, UploadJob(jid=jid, job_output_path=job.output_dir)))
    await _run_all(steps, storage_block, compute_block)
    outputs = len(await asyncio.to_thread(storage.output_files, plugin_job))
    if cleanup and await asyncio.to_thread(storage.has_job_data, jid):
        await _run_all([_request(JobStep.DELETE, DeleteJob(jid=jid))], storage_block, compute_block)
    return {"jid": jid, "output_dir": job.output_dir, "outputs": outputs}


async def _run_all(steps: list[StepRequest], storage_block: str, compute_block: str) -> None:
    """Run the steps in order; raise the first failure."""
    listed = ListedSteps(steps)
    await serve_steps(listed, storage_block, compute_block, IDLE_SECONDS)
    for request in steps:
        state = listed.states.get(request.key)
        if state is not None and not state.is_completed():
            raise RuntimeError(f"The {request.step.value} step of {request.jid} ended {state.name}: {state.message}")
