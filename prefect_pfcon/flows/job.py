"""A whole pfcon job as one flow: the step flows, run as subflows, in CUBE's order."""

from __future__ import annotations

from typing import Any

from prefect import flow, tags
from prefect.runtime import flow_run

from prefect_pfcon.blocks import load_compute, load_storage
from prefect_pfcon.flows.copy import DEFAULT_STORAGE_BLOCK, copy_flow
from prefect_pfcon.flows.delete import delete_flow
from prefect_pfcon.flows.plugin import DEFAULT_COMPUTE_BLOCK, plugin_flow
from prefect_pfcon.flows.results import UNPERSISTED_RESULTS
from prefect_pfcon.flows.upload import upload_flow
from prefect_pfcon.job_secrets import seal
from prefect_pfcon.models import ChrisJob, CopyJob, DeleteJob, UploadJob


def job_id(job: ChrisJob) -> str:
    """The job's jid: the given one, else one derived from this flow run."""
    return job.jid or f"job-{str(flow_run.id)[:13]}"


def _run_name() -> str:
    job = flow_run.parameters.get("job") or {}
    jid = job.get("jid") if isinstance(job, dict) else getattr(job, "jid", None)
    return f"job-{jid}" if jid else f"job-{str(flow_run.id)[:13]}"


@flow(name="pfcon-job", flow_run_name=_run_name, log_prints=True, **UNPERSISTED_RESULTS)
def job_flow(
    job: ChrisJob,
    storage_block: str = DEFAULT_STORAGE_BLOCK,
    compute_block: str = DEFAULT_COMPUTE_BLOCK,
    cleanup: bool = True,
) -> dict[str, Any]:
    """Run a ChRIS plugin on data in the storage: copy → plugin → upload → cleanup.

    Each step is the same flow the pfcon API runs, as a subflow; steps the storage does not
    need are skipped (fslink needs no upload, filesystem no copy). Outputs end in
    ``output_dir``; with ``cleanup`` the job's scratch dir is removed after success.

    Args:
        job: The plugin, its inputs and where its outputs go.
        storage_block: Name of the storage block (e.g. pfcon-storage).
        compute_block: Name of the compute block (e.g. pfcon-compute).
        cleanup: Remove the job's scratch dir (key-<jid>) once the job succeeded.
    """
    storage = load_storage(storage_block)
    if storage.requires_data_file:
        raise ValueError(f"{storage.storage_env} storage takes its inputs as an uploaded zip; use in-network storage")
    jid = job_id(job)
    compute = load_compute(compute_block)
    with tags(f"jid:{jid}", f"image:{job.plugin.image}", f"compute:{compute.container_env}"):
        if storage.requires_copy_job:
            copy_flow(job=CopyJob(jid=jid, input_dirs=job.input_dirs, output_dir=job.output_dir),
                      storage_block=storage_block)
        plugin_flow(job=seal(job.plugin_job(jid)), storage_block=storage_block, compute_block=compute_block)
        if storage.requires_upload_job:
            upload_flow(job=UploadJob(jid=jid, job_output_path=job.output_dir), storage_block=storage_block)
        outputs = len(storage.output_files(job.plugin_job(jid)))
        if cleanup and storage.has_job_data(jid):
            delete_flow(job=DeleteJob(jid=jid), storage_block=storage_block)
    return {"jid": jid, "output_dir": job.output_dir, "outputs": outputs}
