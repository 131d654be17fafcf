"""The delete step: remove a job's key dir."""

from __future__ import annotations

from prefect import flow

from prefect_pfcon.blocks import load_storage
from prefect_pfcon.flows.copy import DEFAULT_STORAGE_BLOCK
from prefect_pfcon.flows.logs import logs_shipped_on_exit
from prefect_pfcon.flows.naming import run_name
from prefect_pfcon.flows.results import UNPERSISTED_RESULTS
from prefect_pfcon.models import DeleteJob, JobStep
from prefect_pfcon.tasks.staging import remove_job_data


@flow(name="pfcon-delete", flow_run_name=run_name(JobStep.DELETE), **UNPERSISTED_RESULTS)
def delete_flow(job: DeleteJob, storage_block: str = DEFAULT_STORAGE_BLOCK) -> None:
    """Remove ``key-<jid>`` with everything in it; outputs outside it stay."""
    with logs_shipped_on_exit():
        remove_job_data(load_storage(storage_block), job.jid)
