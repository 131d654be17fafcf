"""One flow per pfcon job step; each has a deployment the API creates runs of."""

from prefect_pfcon.flows.copy import copy_flow
from prefect_pfcon.flows.delete import delete_flow
from prefect_pfcon.flows.plugin import plugin_flow
from prefect_pfcon.flows.upload import upload_flow
from prefect_pfcon.models import JobStep

STEP_FLOWS = {
    JobStep.COPY: copy_flow,
    JobStep.PLUGIN: plugin_flow,
    JobStep.UPLOAD: upload_flow,
    JobStep.DELETE: delete_flow,
}

__all__ = ["STEP_FLOWS", "copy_flow", "delete_flow", "plugin_flow", "upload_flow"]
