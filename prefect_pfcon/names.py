"""Every name the service gives in Prefect and on containers, in one place.

A job is one flow run ``job-<jid>`` of the ``pfcon-job`` flow; each step a client posts is a
task run ``<step>-<jid>`` of it. Both carry tags operators filter on in the Prefect UI.
"""

from __future__ import annotations

from prefect_pfcon.models import JobStep, PluginJob

JOB_FLOW_NAME = "pfcon-job"
REPROCESS_FLOW_NAME = "pfcon-reprocess"
PIPELINE_FLOW_NAME = "pfcon-pipeline"
DEPLOYMENT_NAME = "pfcon"
"""The deployments the embedded runner serves (``pfcon-job/pfcon``, ``pfcon-reprocess/pfcon``,
``pfcon-pipeline/pfcon``)."""
DEFAULT_STORAGE_BLOCK = "pfcon-storage"
DEFAULT_COMPUTE_BLOCK = "pfcon-compute"
SERVICE_TAG = "pfcon"
PLUGIN_LIMIT = "pfcon-plugins"
"""The global concurrency limit a plugin holds a slot of while it runs (``PFCON_MAX_RUNNING_PLUGINS``)."""

JOB_TYPE_LABEL = "org.chrisproject.job_type"
JID_LABEL = "org.chrisproject.jid"
FLOW_RUN_LABEL = "io.prefect.flow-run-id"
"""On a plugin container: the job's flow run."""
TASK_RUN_LABEL = "io.prefect.task-run-id"
"""On a plugin container: the plugin task run (the attempt) that created it."""
LEASE_LABEL = "io.prefect.concurrency-lease-id"
"""On a plugin container: the lease of the ``pfcon-plugins`` slot it runs in (with a limit)."""


def job_run_name(jid: str) -> str:
    """The flow run of a job: ``job-<jid>``."""
    return f"job-{jid}"


def step_run_name(step: JobStep, jid: str) -> str:
    """The task run of a job step: ``<step>-<jid>``."""
    return f"{step.value}-{jid}"


def job_tags(jid: str) -> list[str]:
    """Tags of a job's flow run."""
    return [f"jid:{jid}", SERVICE_TAG]


def pipeline_tag(pipeline_id: str) -> str:
    """The tag of a pipeline's flow run and of its nodes' job flow runs: ``pipeline:<id>``."""
    return f"pipeline:{pipeline_id}"


RESOURCE_UNITS = {"cpu": "m", "memory": "Mi", "gpu": ""}
"""The requested resources a plugin's task run is tagged with, and their units (``cpu:1000m``)."""


def step_tags(
    step: JobStep,
    jid: str,
    image: str | None = None,
    container_env: str | None = None,
    auid: str | None = None,
    resources: dict[str, int] | None = None,
) -> list[str]:
    """Tags of a step's task run; a plugin's also name its image, compute backend, user and the
    resources it asked for (``RESOURCE_UNITS``)."""
    tags = [f"jid:{jid}", f"step:{step.value}", SERVICE_TAG]
    if image is not None:
        tags.append(f"image:{image}")
    if container_env is not None:
        tags.append(f"compute:{container_env}")
    if auid:
        tags.append(f"auid:{auid}")
    for name, amount in (resources or {}).items():
        tags.append(f"{name}:{amount}{RESOURCE_UNITS[name]}")
    return tags


def plugin_tags(job: PluginJob, container_env: str) -> list[str]:
    """Tags of a plugin step's task run."""
    return step_tags(JobStep.PLUGIN, job.jid, image=job.image, container_env=container_env, auid=job.auid,
                     resources={"cpu": job.cpu_limit, "memory": job.memory_limit, "gpu": job.gpu_limit})


def tag_values(tags: list[str], name: str) -> list[str]:
    """The values of the ``<name>:<value>`` tags."""
    prefix = f"{name}:"
    return [tag.removeprefix(prefix) for tag in tags if tag.startswith(prefix)]


def tagged_amount(tags: list[str], name: str) -> int | None:
    """The amount of resource ``name`` (``RESOURCE_UNITS``) the tags record, if any."""
    for value in tag_values(tags, name):
        amount = value.removesuffix(RESOURCE_UNITS[name])
        if amount.isdigit():
            return int(amount)
    return None
