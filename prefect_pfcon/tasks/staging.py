"""Tasks that move job data through a storage block."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from prefect_pfcon.blocks.storage import StorageBlock
from prefect_pfcon.models import CopyJob, UploadJob


@task(name="stage-in", cache_policy=NO_CACHE)
def stage_in(storage: StorageBlock, job: CopyJob) -> int:
    """Stage the job's input dirs into its key dir; pfcon's ``nfiles``."""
    logger = get_run_logger()
    logger.info("Staging %s (%s) for job %s", job.input_dirs, storage.storage_env, job.jid)
    nfiles = storage.stage_in(job)
    logger.info("Staged %d files into key-%s/incoming", nfiles, job.jid)
    return nfiles


@task(name="stage-out", cache_policy=NO_CACHE)
def stage_out(storage: StorageBlock, job: UploadJob) -> int:
    """Push the job's outputs to ``job_output_path``; the number of files pushed."""
    logger = get_run_logger()
    count = storage.stage_out(job)
    logger.info("Uploaded %d files to %s", count, job.job_output_path)
    return count


@task(name="remove-job-data", cache_policy=NO_CACHE)
def remove_job_data(storage: StorageBlock, jid: str) -> None:
    """Remove the job's key dir (never its fslink/filesystem output dir)."""
    storage.remove_job_data(jid)
    get_run_logger().info("Removed key-%s", jid)
