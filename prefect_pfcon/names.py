"""Every name the service gives in Prefect and on containers, in one place.

A job is one flow run ``job-<jid>`` of the ``pfcon-job`` flow; each step a client posts is a
task run ``<step>-<jid>`` of it. Both carry tags operators filter on in the Prefect UI.
"""

from __future__ import annotations

from prefect_pfcon.models import JobStep

JOB_FLOW_NAME = "pfcon-job"
REPROCESS_FLOW_NAME = "pfcon-reprocess"
DEPLOYMENT_NAME = "pfcon"
"""The deployments the embedded runner serves (``pfcon-job/pfcon``, ``pfcon-reprocess/pfcon``)."""
DEFAULT_STORAGE_BLOCK = "pfcon-storage"
DEFAULT_COMPUTE_BLOCK = "pfcon-compute"
SERVICE_TAG = "pfcon"

JOB_TYPE_LABEL = "org.chrisproject.job_type"
JID_LABEL = "org.chrisproject.jid"
FLOW_RUN_LABEL = "io.prefect.flow-run-id"
"""On a plugin container: the job's flow run."""
TASK_RUN_LABEL = "io.prefect.task-run-id"
"""On a plugin container: the plugin task run (the attempt) that created it."""


def job_run_name(jid: str) -> str:
    """The flow run of a job: ``job-<jid>``."""
    return f"job-{jid}"


def step_run_name(step: JobStep, jid: str) -> str:
    """The task run of a job step: ``<step>-<jid>``."""
    return f"{step.value}-{jid}"


def job_tags(jid: str) -> list[str]:
    """Tags of a job's flow run."""
    return [f"jid:{jid}", SERVICE_TAG]


def step_tags(step: JobStep, jid: str, image: str | None = None, container_env: str | None = None) -> list[str]:
    """Tags of a step's task run; a plugin's also name its image and compute backend."""
    tags = [f"jid:{jid}", f"step:{step.value}", SERVICE_TAG]
    if image is not None:
        tags.append(f"image:{image}")
    if container_env is not None:
        tags.append(f"compute:{container_env}")
    return tags
