"""The copy step: stage a job's inputs into its key dir."""

from __future__ import annotations

from prefect import flow

from prefect_pfcon.blocks import load_storage
from prefect_pfcon.flows.logs import logs_shipped_on_exit
from prefect_pfcon.flows.naming import run_name
from prefect_pfcon.flows.results import UNPERSISTED_RESULTS
from prefect_pfcon.models import CopyJob, JobStep
from prefect_pfcon.tasks.staging import stage_in

DEFAULT_STORAGE_BLOCK = "pfcon-storage"


@flow(name="pfcon-copy", flow_run_name=run_name(JobStep.COPY), validate_parameters=True, **UNPERSISTED_RESULTS)
def copy_flow(job: CopyJob, storage_block: str = DEFAULT_STORAGE_BLOCK) -> int:
    """Copy ``input_dirs`` (following ``.chrislink`` files) into ``key-<jid>/incoming``."""
    with logs_shipped_on_exit():
        return stage_in(load_storage(storage_block), job)
