"""The plugin step: run a ChRIS plugin container and stream its logs."""

from __future__ import annotations

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled

from prefect_pfcon.blocks import load_compute, load_storage
from prefect_pfcon.blocks.compute import ComputeBlock, ComputeError, ContainerJob
from prefect_pfcon.blocks.compute.base import FLOW_RUN_LABEL, JID_LABEL, JOB_TYPE_LABEL
from prefect_pfcon.blocks.storage import StorageBlock
from prefect_pfcon.flows.copy import DEFAULT_STORAGE_BLOCK
from prefect_pfcon.flows.logs import logs_shipped_on_exit
from prefect_pfcon.flows.naming import run_name
from prefect_pfcon.flows.results import UNPERSISTED_RESULTS
from prefect_pfcon.job_secrets import unsealed_env
from prefect_pfcon.models import JobStep, PluginJob
from prefect_pfcon.tasks.artifacts import publish_outputs
from prefect_pfcon.tasks.command import build_plugin_command
from prefect_pfcon.tasks.containers import launch_container, watch_container

DEFAULT_COMPUTE_BLOCK = "pfcon-compute"
OOM_EXIT_CODE = 137


class PluginFailed(RuntimeError):
    """The plugin container exited with a non-zero code."""


def removed_by_client() -> bool:
    """Whether this run was cancelled while its container ran (a client DELETE)."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    return state is not None and (state.is_cancelled() or state.is_cancelling())


def container_job(job: PluginJob, storage: StorageBlock, compute: ComputeBlock, run_id: str) -> ContainerJob:
    """The container a plugin job needs, with mounts in the engine's view of the storeBase and
    the job's real (unsealed) env."""
    mounts = storage.plugin_mounts(job)
    mounts.outgoing.mkdir(parents=True, exist_ok=True)
    return ContainerJob(
        name=JobStep.PLUGIN.container_name(job.jid),
        image=job.image,
        command=build_plugin_command(job.entrypoint, job.args, job.args_path_flags, job.type),
        env=unsealed_env(job),
        cpu_limit=job.cpu_limit,
        memory_limit=job.memory_limit,
        gpu_limit=job.gpu_limit,
        number_of_workers=job.number_of_workers,
        incoming=storage.to_host_path(mounts.incoming),
        outgoing=storage.to_host_path(mounts.outgoing),
        labels={JOB_TYPE_LABEL: "plugin", JID_LABEL: job.jid, FLOW_RUN_LABEL: run_id},
    )


@flow(name="pfcon-plugin", flow_run_name=run_name(JobStep.PLUGIN), **UNPERSISTED_RESULTS)
def plugin_flow(
    job: PluginJob,
    storage_block: str = DEFAULT_STORAGE_BLOCK,
    compute_block: str = DEFAULT_COMPUTE_BLOCK,
) -> int | State:
    """Run the plugin with ``/share/incoming`` (read-only) and ``/share/outgoing`` mounted."""
    with logs_shipped_on_exit():
        compute, storage = load_compute(compute_block), load_storage(storage_block)
        spec = container_job(job, storage, compute, str(flow_run.id))
        launch_container(compute, spec, str(flow_run.id))
        try:
            exit_code = watch_container(compute, spec)
        except ComputeError:
            if removed_by_client():
                return Cancelled(message="Removed by a client DELETE")
            raise
        if exit_code == 0:
            publish_outputs(storage, job)
    if exit_code != 0 and removed_by_client():
        return Cancelled(message="Removed by a client DELETE")
    if exit_code == OOM_EXIT_CODE:
        raise PluginFailed(
            f"Plugin killed (exit code 137), most likely by its {job.memory_limit} MiB memory limit"
        )
    if exit_code != 0:
        raise PluginFailed(f"Plugin exited with code {exit_code}")
    return exit_code
