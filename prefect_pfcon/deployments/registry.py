"""Registering what the service needs in Prefect: its blocks and its deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.schedules import Cron
from prefect.utilities.callables import ParameterSchema, parameter_schema

from prefect_pfcon.blocks import COMPUTE_BLOCKS, STORAGE_BLOCKS, ComputeBlock, StorageBlock
from prefect_pfcon.blocks.compute.volumes import volume_mountpoint
from prefect_pfcon.flows.job import job_flow
from prefect_pfcon.flows.pipeline import pipeline_flow
from prefect_pfcon.flows.reprocess import reprocess_flow
from prefect_pfcon.names import DEPLOYMENT_NAME, PLUGIN_LIMIT, SERVICE_TAG
from prefect_pfcon.settings import PfconSettings, Section


def _own_fields(section: Section, name: str) -> dict[str, Any]:
    """The fields of ``section``'s nested section ``name`` (a storage mode's or a compute
    backend's own fields), if it has one."""
    nested = getattr(section, name, None)
    return nested.model_dump() if isinstance(nested, Section) else {}


def engine_store_base(settings: PfconSettings) -> Path | None:
    """The storeBase as the container engine sees it, when it differs from ``STOREBASE_MOUNT``:
    ``STOREBASE``, or the mount point of the storeBase's Docker volume."""
    storage, compute = settings.storage, settings.compute
    if compute.volume_type == "docker_local_volume":
        return volume_mountpoint(compute.volume_name, compute.pfcon_selector, storage.store_base)
    return storage.host_store_base


def storage_from_settings(settings: PfconSettings) -> StorageBlock:
    """The storage block the settings describe (``STORAGE_ENV``, ``STOREBASE_MOUNT`` ...)."""
    storage = settings.storage
    host_store_base = engine_store_base(settings)
    return STORAGE_BLOCKS[storage.storage_env](**{
        **storage.model_dump(),
        **_own_fields(storage, storage.storage_env),
        "host_store_base": str(host_store_base) if host_store_base else None,
    })


def _derived_compute_fields(settings: PfconSettings) -> dict[str, Any]:
    """The compute fields made from other settings: Slurm's work dir (by default in the state
    dir), Kubernetes' storeBase (the storage's, as the engine sees it) and PVC (``VOLUME_NAME``)."""
    storage, compute = settings.storage, settings.compute
    return {
        "work_dir": str(compute.slurm.work_dir or settings.service.state_dir / "slurm"),
        "store_base": str(storage.host_store_base or storage.store_base),
        "pvc_name": compute.volume_name,
    }


def compute_from_settings(settings: PfconSettings) -> ComputeBlock:
    """The compute block the settings describe (``CONTAINER_ENV``, ``JOB_LABELS`` ...): the
    fields of the backend's block among the compute settings, its own and the derived ones."""
    compute = settings.compute
    block = COMPUTE_BLOCKS[compute.container_env]
    fields = {
        **compute.model_dump(),
        **_own_fields(compute, compute.container_env),
        **_derived_compute_fields(settings),
    }
    return block(**{name: value for name, value in fields.items() if name in block.model_fields})


async def save_blocks(settings: PfconSettings) -> None:
    """Save the storage and compute blocks the settings describe under their names."""
    settings.storage.store_base.mkdir(parents=True, exist_ok=True)
    await storage_from_settings(settings).asave(settings.storage.block_name, overwrite=True)
    await compute_from_settings(settings).asave(settings.compute.block_name, overwrite=True)


async def apply_plugin_limit(settings: PfconSettings) -> None:
    """With ``PFCON_MAX_RUNNING_PLUGINS``, create the global concurrency limit ``pfcon-plugins``
    with that many slots, or set its slots to it; without it, nothing."""
    slots = settings.compute.max_running_plugins
    if slots is not None:
        async with get_client() as client:
            await client.upsert_global_concurrency_limit_by_name(PLUGIN_LIMIT, slots)


SERVED_ONLY = ("jid", "idle_seconds")

EXAMPLE_REPROCESS_SCHEDULE = Cron(
    "0 2 * * *",
    timezone="UTC",
    active=False,
    slug="nightly-example",
    parameters={
        "plugin": {"image": "fnndsc/pl-simpledsapp", "entrypoint": ["simpledsapp"], "type": "ds"},
        "inputs": {"glob": "home/*/uploads/*"},
    },
)


async def apply_deployments() -> dict[UUID, Flow]:
    """Create or update the deployments the embedded runner serves; their ids with their flows.

    The job deployment (``pfcon-job/pfcon``: a whole job from the Prefect UI's run form), the
    reprocessing deployment (``pfcon-reprocess/pfcon``, with a nightly example schedule,
    paused) and the pipeline deployment (``pfcon-pipeline/pfcon``). The API's own jobs are
    flow runs of the same job flow.
    """
    job = await job_flow.to_deployment(name=DEPLOYMENT_NAME, tags=[SERVICE_TAG, "job"], description=job_flow.description)
    job_id = await job.apply()
    async with get_client() as client:
        form = whole_job_form().model_dump(exclude_unset=True)
        await client.update_deployment(job_id, DeploymentUpdate(parameter_openapi_schema=form))
    reprocess = await reprocess_flow.to_deployment(
        name=DEPLOYMENT_NAME,
        tags=[SERVICE_TAG, "reprocess"],
        description=reprocess_flow.description,
        schedules=[EXAMPLE_REPROCESS_SCHEDULE],
    )
    pipeline = await pipeline_flow.to_deployment(
        name=DEPLOYMENT_NAME, tags=[SERVICE_TAG, "pipeline"], description=pipeline_flow.description)
    return {job_id: job_flow, await reprocess.apply(): reprocess_flow, await pipeline.apply(): pipeline_flow}


def whole_job_form() -> ParameterSchema:
    """The job deployment's run form: a whole job, its ``job`` required and typed; the
    parameters only the API's served runs use (``jid``, ``idle_seconds``) left out."""
    schema = parameter_schema(job_flow)
    properties = {name: field for name, field in schema.properties.items() if name not in SERVED_ONLY}
    job = {key: value for key, value in properties["job"].items() if key not in ("anyOf", "default")}
    properties["job"] = {**job, **next(option for option in schema.properties["job"]["anyOf"] if "$ref" in option)}
    return schema.model_copy(update={"properties": properties, "required": ["job"]})
