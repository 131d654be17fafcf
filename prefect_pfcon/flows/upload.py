"""The upload step: push a job's outputs to object storage."""

from __future__ import annotations

from prefect import flow

from prefect_pfcon.blocks import load_storage
from prefect_pfcon.flows.copy import DEFAULT_STORAGE_BLOCK
from prefect_pfcon.flows.logs import logs_shipped_on_exit
from prefect_pfcon.flows.naming import run_name
from prefect_pfcon.flows.results import UNPERSISTED_RESULTS
from prefect_pfcon.models import JobStep, UploadJob
from prefect_pfcon.tasks.staging import stage_out


@flow(name="pfcon-upload", flow_run_name=run_name(JobStep.UPLOAD), **UNPERSISTED_RESULTS)
def upload_flow(job: UploadJob, storage_block: str = DEFAULT_STORAGE_BLOCK) -> int:
    """Upload ``key-<jid>/outgoing`` under ``job_output_path``."""
    with logs_shipped_on_exit():
        return stage_out(load_storage(storage_block), job)
