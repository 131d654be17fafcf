"""Tasks that run a plugin container through a compute block and watch it."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from prefect_pfcon.blocks.compute import ComputeBlock, ContainerJob
from prefect_pfcon.blocks.compute.base import JID_LABEL
from prefect_pfcon.job_secrets import mask, masked_values
from prefect_pfcon.tasks.log_records import grouped_lines


@task(name="launch-container", cache_policy=NO_CACHE)
def launch_container(compute: ComputeBlock, job: ContainerJob, flow_run_id: str) -> bool:
    """Start the job's container; re-attach (return ``True``) if this flow run already did.

    A container of the same name left by an earlier, replaced attempt is removed first; one
    prefect-pfcon did not create for this jid raises ``ForeignContainer`` and stays.
    """
    logger = get_run_logger()
    existing = compute.own_state(job.name, job.labels.get(JID_LABEL, ""))
    if existing is not None and existing.flow_run_id == flow_run_id:
        logger.info("Re-attaching to container %s (%s)", job.name, existing.message)
        return True
    if existing is not None:
        logger.info("Removing container %s left by an earlier attempt", job.name)
        compute.remove(job.name)
    compute.submit(job)
    logger.info("Started container %s from %s: %s", job.name, job.image, job.command)
    return False


@task(name="watch-container", cache_policy=NO_CACHE)
def watch_container(compute: ComputeBlock, job: ContainerJob) -> int:
    """Stream the container's output into this run's logs, the job's env values masked, lines
    that come together as one record; return its exit code."""
    logger = get_run_logger()
    secrets = masked_values(job.env)
    for lines in grouped_lines(compute.follow_logs(job.name)):
        logger.info("\n".join(mask(line, secrets) for line in lines))
    exit_code = compute.wait(job.name)
    logger.info("Container %s exited with code %d", job.name, exit_code)
    return exit_code
