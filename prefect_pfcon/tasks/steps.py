"""The four pfcon job steps as Prefect tasks; a job's flow run runs one per posted step.

Each takes its blocks and the step's job model; the task run is named ``<step>-<jid>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Cancelled

from prefect_pfcon.blocks.compute import ComputeBlock, ContainerJob
from prefect_pfcon.blocks.compute.limits import LimitReached, await_start, time_limit, time_limit_message
from prefect_pfcon.blocks.storage import StorageBlock
from prefect_pfcon.job_secrets import mask, masked_values, unsealed_env
from prefect_pfcon.models import CopyJob, DeleteJob, JobStep, PluginJob, UploadJob
from prefect_pfcon.names import FLOW_RUN_LABEL, JID_LABEL, JOB_TYPE_LABEL, LEASE_LABEL, PLUGIN_LIMIT, TASK_RUN_LABEL
from prefect_pfcon.tasks.artifacts import artifact_key
from prefect_pfcon.tasks.plugin_slot import SlotWaitEnded, plugin_slot
from prefect_pfcon.lib.command import build_plugin_command
from prefect_pfcon.lib.log_records import grouped_lines

OOM_EXIT_CODE = 137
MAX_OUTPUT_ROWS = 1000
REMOVED_BY_CLIENT = "Removed by a client DELETE"


class PluginFailed(RuntimeError):
    """The plugin container exited with a non-zero code."""


@task(name="copy", task_run_name="copy-{job.jid}", cache_policy=NO_CACHE)
def copy_step(storage: StorageBlock, job: CopyJob) -> int:
    """Copy ``input_dirs`` (following ``.chrislink`` files) into ``key-<jid>/incoming``;
    pfcon's ``nfiles``."""
    logger = get_run_logger()
    logger.info("Staging %s (%s) for job %s", job.input_dirs, storage.storage_env, job.jid)
    nfiles = storage.stage_in(job)
    logger.info("Staged %d files into key-%s/incoming", nfiles, job.jid)
    return nfiles


@task(name="plugin", task_run_name="plugin-{job.jid}", cache_policy=NO_CACHE)
def plugin_step(
    storage: StorageBlock,
    compute: ComputeBlock,
    job: PluginJob,
    flow_run_id: str,
    task_run_id: str,
    removed: Callable[[], bool],
    slot_taken: Callable[[], None],
) -> int | State:
    """Run the plugin with ``/share/incoming`` (read-only) and ``/share/outgoing`` mounted,
    its output in this task run's logs; re-attach to the container this attempt started
    before a restart. With ``max_running_plugins``, hold a ``pfcon-plugins`` slot while the
    container is launched and watched (``slot_taken`` once it is held). Ends Cancelled when a
    client DELETE ``removed`` it; fails with ``LimitReached`` when it did not start in time or
    ran past its time limit."""
    spec = container_job(job, storage, flow_run_id, task_run_id)
    limit = PLUGIN_LIMIT if compute.max_running_plugins else None
    existing = compute.own_state(spec.name, job.jid) if limit is not None else None
    attached = existing is not None and existing.task_run_id == task_run_id
    held = existing.labels.get(LEASE_LABEL) if existing is not None and attached else None
    try:
        with plugin_slot(limit, task_run_id, attached=attached, held=held, taken=slot_taken,
                         removed=removed) as lease:
            if lease is not None:
                spec = replace(spec, labels={**spec.labels, LEASE_LABEL: str(lease)})
            launch_container(compute, spec, task_run_id)
            exit_code = watch_within_limits(compute, spec)
    except SlotWaitEnded as ended:
        return Cancelled(message=str(ended))
    except LimitReached:
        raise
    except Exception:  # the backend lost the container: a client DELETE, or a failure
        if removed():
            return Cancelled(message=REMOVED_BY_CLIENT)
        raise
    if exit_code != 0 and removed():
        return Cancelled(message=REMOVED_BY_CLIENT)
    if exit_code == OOM_EXIT_CODE:
        raise PluginFailed(f"Plugin killed (exit code 137), most likely by its {job.memory_limit} MiB memory limit")
    if exit_code != 0:
        raise PluginFailed(f"Plugin exited with code {exit_code}")
    publish_outputs(storage, job)
    return exit_code


@task(name="upload", task_run_name="upload-{job.jid}", cache_policy=NO_CACHE)
def upload_step(storage: StorageBlock, job: UploadJob) -> int:
    """Upload ``key-<jid>/outgoing`` under ``job_output_path``; the number of files pushed."""
    count = storage.stage_out(job)
    get_run_logger().info("Uploaded %d files to %s", count, job.job_output_path)
    return count


@task(name="delete", task_run_name="delete-{job.jid}", cache_policy=NO_CACHE)
def delete_step(storage: StorageBlock, job: DeleteJob) -> None:
    """Remove ``key-<jid>`` with everything in it; outputs outside it stay."""
    storage.remove_job_data(job.jid)
    get_run_logger().info("Removed key-%s", job.jid)


def container_job(job: PluginJob, storage: StorageBlock, flow_run_id: str, task_run_id: str) -> ContainerJob:
    """The container a plugin job needs, with mounts in the engine's view of the storeBase
    and the job's real (unsealed) env."""
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
        labels={JOB_TYPE_LABEL: "plugin", JID_LABEL: job.jid, FLOW_RUN_LABEL: flow_run_id,
                TASK_RUN_LABEL: task_run_id},
    )


def launch_container(compute: ComputeBlock, job: ContainerJob, task_run_id: str) -> bool:
    """Start the job's container; re-attach (return ``True``) if this attempt already did.

    A container of the same name left by an earlier, replaced attempt is removed first; one
    prefect-pfcon did not create for this jid raises ``ForeignContainer`` and stays.
    """
    logger = get_run_logger()
    existing = compute.own_state(job.name, job.labels[JID_LABEL])
    if existing is not None and existing.task_run_id == task_run_id:
        logger.info("Re-attaching to container %s (%s)", job.name, existing.message)
        return True
    if existing is not None:
        logger.info("Removing container %s left by an earlier attempt", job.name)
        compute.remove(job.name)
    compute.submit(job)
    logger.info("Started container %s from %s: %s", job.name, job.image, job.command)
    return False


def watch_within_limits(compute: ComputeBlock, job: ContainerJob) -> int:
    """Wait for the container to start (within the start timeout), then watch it to its end
    (within the time limit); its exit code. Raises ``LimitReached`` at either limit."""
    started = await_start(compute, job.name)
    with time_limit(compute, job.name, started) as stopped:
        try:
            exit_code = watch_container(compute, job)
        except Exception as error:
            if stopped.is_set():
                raise LimitReached(time_limit_message(compute.max_job_seconds)) from error
            raise
    if stopped.is_set():
        raise LimitReached(time_limit_message(compute.max_job_seconds))
    return exit_code


def watch_container(compute: ComputeBlock, job: ContainerJob) -> int:
    """Stream the container's output into the task run's logs, the job's env values masked,
    lines that come together as one record; its exit code."""
    logger = get_run_logger()
    secrets = masked_values(job.env)
    for lines in grouped_lines(compute.follow_logs(job.name)):
        logger.info("\n".join(mask(line, secrets) for line in lines))
    exit_code = compute.wait(job.name)
    logger.info("Container %s exited with code %d", job.name, exit_code)
    return exit_code


def publish_outputs(storage: StorageBlock, job: PluginJob) -> int:
    """A table artifact of the plugin's output files; how many there are."""
    files = storage.output_files(job)
    shown = f"the first {MAX_OUTPUT_ROWS} of " if len(files) > MAX_OUTPUT_ROWS else ""
    create_table_artifact(
        table=[{"file": name} for name in files[:MAX_OUTPUT_ROWS]],
        key=artifact_key("pfcon-outputs", job.jid),
        description=f"Outputs of plugin job `{job.jid}` ({job.image}): {shown}{len(files)} files "
        f"in `{job.output_dir or 'outgoing'}`.",
    )
    return len(files)


STEP_TASKS = {JobStep.COPY: copy_step, JobStep.PLUGIN: plugin_step, JobStep.UPLOAD: upload_step,
              JobStep.DELETE: delete_step}
