"""Registering what the service needs in Prefect: its blocks and its deployments."""

from __future__ import annotations

import shlex
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
from prefect_pfcon.flows.reprocess import reprocess_flow
from prefect_pfcon.names import DEPLOYMENT_NAME, SERVICE_TAG
from prefect_pfcon.settings import PfconSettings, parse_key_values


def _storage_mode_options(settings: PfconSettings) -> dict[str, Any]:
    """Fields only one storage mode has (Swift and S3 credentials, the zip size limit, hard links)."""
    if settings.storage_env == "swift":
        return {
            "auth_url": settings.swift_auth_url,
            "username": settings.swift_username,
            "key": settings.swift_key,
            "container_name": settings.swift_container_name,
        }
    if settings.storage_env == "s3":
        return {
            "endpoint_url": settings.s3_endpoint_url,
            "access_key": settings.s3_access_key,
            "secret_key": settings.s3_secret_key,
            "bucket_name": settings.s3_bucket_name,
            "region_name": settings.s3_region_name,
        }
    if settings.storage_env == "zipfile":
        return {"max_unpacked_mb": settings.zip_max_unpacked_mb}
    if settings.storage_env == "fslink":
        return {"hardlink_inputs": settings.hardlink_inputs}
    return {}


def engine_store_base(settings: PfconSettings) -> Path | None:
    """The storeBase as the container engine sees it, when it differs from ``STOREBASE_MOUNT``:
    ``STOREBASE``, or the mount point of the storeBase's Docker volume."""
    if settings.compute_volume_type == "docker_local_volume":
        return volume_mountpoint(settings.volume_name, settings.pfcon_selector, settings.store_base)
    return settings.host_store_base


def storage_from_settings(settings: PfconSettings) -> StorageBlock:
    """The storage block the settings describe (``STORAGE_ENV``, ``STOREBASE_MOUNT`` ...)."""
    host_store_base = engine_store_base(settings)
    return STORAGE_BLOCKS[settings.storage_env](
        store_base=str(settings.store_base),
        host_store_base=str(host_store_base) if host_store_base else None,
        transfer_workers=settings.transfer_workers,
        **_storage_mode_options(settings),
    )


def _compute_backend_options(settings: PfconSettings) -> dict[str, Any]:
    """Fields only some compute backends have (network mode, swarm GPUs, Slurm's and Kubernetes' site options)."""
    if settings.container_env == "docker":
        return {"network_mode": settings.network_mode, "volume_type": settings.compute_volume_type}
    if settings.container_env == "swarm":
        return {"network_mode": settings.network_mode, "gpu_resource": settings.swarm_gpu_resource}
    if settings.container_env == "slurm":
        return {
            "network_mode": settings.network_mode,
            "work_dir": str(settings.slurm_work_dir or settings.state_dir / "slurm"),
            "runtime": settings.slurm_runtime,
            "runtime_options": shlex.split(settings.slurm_runtime_options),
            "partition": settings.slurm_partition,
            "account": settings.slurm_account,
            "time_limit": settings.slurm_time_limit,
            "sbatch_options": shlex.split(settings.slurm_sbatch_options),
        }
    if settings.container_env == "kubernetes":
        return {
            "namespace": settings.job_namespace,
            "kubeconfig": settings.kubeconfig,
            "volume_type": settings.compute_volume_type,
            "pvc_name": settings.volume_name,
            "store_base": str(settings.host_store_base or settings.store_base),
            "node_selector": parse_key_values(settings.node_selector),
            "image_pull_secrets": [name.strip() for name in settings.image_pull_secrets.split(",") if name.strip()],
        }
    return {}


def compute_from_settings(settings: PfconSettings) -> ComputeBlock:
    """The compute block the settings describe (``CONTAINER_ENV``, ``JOB_LABELS`` ...)."""
    return COMPUTE_BLOCKS[settings.container_env](
        container_user=settings.container_user,
        enable_home_workaround=settings.enable_home_workaround,
        shm_size=settings.shm_size,
        job_labels=parse_key_values(settings.job_labels),
        logs_tail=settings.job_logs_tail,
        ignore_limits=settings.ignore_limits,
        remove_jobs=settings.remove_jobs,
        pids_limit=settings.pids_limit or None,
        **_compute_backend_options(settings),
    )


async def save_blocks(settings: PfconSettings) -> None:
    """Save the storage and compute blocks the settings describe under their names."""
    settings.store_base.mkdir(parents=True, exist_ok=True)
    await storage_from_settings(settings).asave(settings.storage_block, overwrite=True)
    await compute_from_settings(settings).asave(settings.compute_block, overwrite=True)


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

    The job deployment (``pfcon-job/pfcon``: a whole job from the Prefect UI's run form) and
    the reprocessing deployment (``pfcon-reprocess/pfcon``, with a nightly example schedule,
    paused). The API's own jobs are flow runs of the same job flow.
    """
    job = await job_flow.to_deployment(name=DEPLOYMENT_NAME, tags=[SERVICE_TAG, "job"], description=job_flow.description)
    job_id = await job.apply()
    async with get_client() as client:
        await client.update_deployment(job_id, DeploymentUpdate(parameter_openapi_schema=whole_job_form().model_dump_for_openapi()))
    reprocess = await reprocess_flow.to_deployment(
        name=DEPLOYMENT_NAME,
        tags=[SERVICE_TAG, "reprocess"],
        description=reprocess_flow.description,
        schedules=[EXAMPLE_REPROCESS_SCHEDULE],
    )
    return {job_id: job_flow, await reprocess.apply(): reprocess_flow}


def whole_job_form() -> ParameterSchema:
    """The job deployment's run form: a whole job, its ``job`` required and typed; the
    parameters only the API's served runs use (``jid``, ``idle_seconds``) left out."""
    schema = parameter_schema(job_flow)
    properties = {name: field for name, field in schema.properties.items() if name not in SERVED_ONLY}
    job = {key: value for key, value in properties["job"].items() if key not in ("anyOf", "default")}
    properties["job"] = {**job, **next(option for option in schema.properties["job"]["anyOf"] if "$ref" in option)}
    return schema.model_copy(update={"properties": properties, "required": ["job"]})
