"""Service configuration, read from the environment with pfcon's variable names."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_pfcon.state_dir import read_or_create_secret

StorageEnv = Literal["fslink", "filesystem", "swift", "s3", "zipfile"]
ContainerEnv = Literal["docker", "swarm", "slurm", "kubernetes"]
VolumeType = Literal["host", "docker_local_volume", "kubernetes_pvc"]

DEV_PASSWORD = "pfcon1234"
PRODUCTION = "production"
VOLUME_TYPES: dict[str, tuple[VolumeType, ...]] = {
    # the first is the default; docker defaults to host here (pfcon: docker_local_volume),
    # and kubernetes also takes a host path (one-node sites)
    "docker": ("host", "docker_local_volume"),
    "swarm": ("host",),
    "slurm": ("host",),
    "kubernetes": ("kubernetes_pvc", "host"),
}
PREFECT_AUTH_FILE = "prefect-auth"


def parse_key_values(text: str) -> dict[str, str]:
    """Parse pfcon's ``k=v,k2=v2`` format (used by ``JOB_LABELS``)."""
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {key.strip(): value.strip() for key, value in pairs}


class PfconSettings(BaseSettings):
    """Settings of the pfcon-format API and of the blocks it creates on ``up``."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", validation_alias="PFCON_HOST")
    port: int = Field(30006, validation_alias="PFCON_PORT")
    user: str = Field("pfcon", validation_alias="PFCON_USER")
    password: str = Field(DEV_PASSWORD, validation_alias="PFCON_PASSWORD")
    secret_key: str = Field("", validation_alias="SECRET_KEY")
    application_mode: str | None = Field(None, validation_alias="APPLICATION_MODE")
    innetwork: bool | None = Field(None, validation_alias="PFCON_INNETWORK")
    prefect_auth_string: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING"),
    )
    state_dir: Path = Field(
        Path.home() / ".prefect-pfcon", validation_alias="PFCON_STATE_DIR"
    )

    storage_env: StorageEnv = Field("fslink", validation_alias="STORAGE_ENV")
    container_env: ContainerEnv = Field("docker", validation_alias="CONTAINER_ENV")
    store_base: Path = Field(
        Path("/var/local/storeBase"),
        validation_alias=AliasChoices("STOREBASE_MOUNT", "PFCON_STOREBASE"),
    )
    host_store_base: Path | None = Field(None, validation_alias="STOREBASE")
    hardlink_inputs: bool = Field(True, validation_alias="PFCON_HARDLINK_INPUTS")
    transfer_workers: int = Field(10, ge=1, le=64, validation_alias="PFCON_TRANSFER_WORKERS")
    max_upload_mb: int = Field(10240, ge=1, validation_alias="PFCON_MAX_UPLOAD_MB")
    zip_max_unpacked_mb: int = Field(10240, ge=1, validation_alias="PFCON_ZIP_MAX_UNPACKED_MB")
    swift_auth_url: str = Field("", validation_alias="SWIFT_AUTH_URL")
    swift_username: str = Field("", validation_alias="SWIFT_USERNAME")
    swift_key: SecretStr = Field(SecretStr(""), validation_alias="SWIFT_KEY")
    swift_container_name: str = Field("users", validation_alias="SWIFT_CONTAINER_NAME")
    s3_endpoint_url: str = Field("", validation_alias="S3_ENDPOINT_URL")
    s3_access_key: SecretStr = Field(SecretStr(""), validation_alias="S3_ACCESS_KEY")
    s3_secret_key: SecretStr = Field(SecretStr(""), validation_alias="S3_SECRET_KEY")
    s3_bucket_name: str = Field("users", validation_alias="S3_BUCKET_NAME")
    s3_region_name: str = Field("us-east-1", validation_alias="S3_REGION_NAME")
    storage_block: str = Field("pfcon-storage", validation_alias="PFCON_STORAGE_BLOCK")
    compute_block: str = Field("pfcon-compute", validation_alias="PFCON_COMPUTE_BLOCK")

    container_user: str | None = Field(None, validation_alias="CONTAINER_USER")
    enable_home_workaround: bool = Field(False, validation_alias="ENABLE_HOME_WORKAROUND")
    shm_size: int | None = Field(None, validation_alias="SHM_SIZE")
    job_labels: str = Field("", validation_alias="JOB_LABELS")
    job_logs_tail: int = Field(1000, validation_alias="JOB_LOGS_TAIL")
    ignore_limits: bool = Field(False, validation_alias="IGNORE_LIMITS")
    remove_jobs: bool = Field(True, validation_alias="REMOVE_JOBS")
    legacy_wait_seconds: float = Field(600, gt=0, validation_alias="PFCON_LEGACY_WAIT_SECONDS")
    network_mode: str = Field("none", validation_alias="PFCON_NETWORK_MODE")
    swarm_gpu_resource: str = Field("NVIDIA-GPU", validation_alias="PFCON_SWARM_GPU_RESOURCE")
    pids_limit: int = Field(1024, ge=0, validation_alias="PFCON_PIDS_LIMIT")

    slurm_work_dir: Path | None = Field(None, validation_alias="PFCON_SLURM_WORK_DIR")
    slurm_runtime: str = Field("docker", validation_alias="PFCON_SLURM_RUNTIME")
    slurm_runtime_options: str = Field("", validation_alias="PFCON_SLURM_RUNTIME_OPTIONS")
    slurm_partition: str | None = Field(None, validation_alias="PFCON_SLURM_PARTITION")
    slurm_account: str | None = Field(None, validation_alias="PFCON_SLURM_ACCOUNT")
    slurm_time_limit: str | None = Field(None, validation_alias="PFCON_SLURM_TIME_LIMIT")
    slurm_sbatch_options: str = Field("", validation_alias="PFCON_SLURM_SBATCH_OPTIONS")

    job_namespace: str = Field("default", validation_alias="JOB_NAMESPACE")
    node_selector: str = Field("", validation_alias="NODE_SELECTOR")
    image_pull_secrets: str = Field("", validation_alias="IMAGE_PULL_SECRETS")
    compute_volume_type: VolumeType | None = Field(None, validation_alias="COMPUTE_VOLUME_TYPE")
    volume_name: str | None = Field(None, validation_alias="VOLUME_NAME")
    pfcon_selector: str = Field("org.chrisproject.role=pfcon", validation_alias="PFCON_SELECTOR")
    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG")

    login_max_failures: int = Field(10, ge=1, validation_alias="PFCON_LOGIN_MAX_FAILURES")
    login_window_seconds: float = Field(60.0, gt=0, validation_alias="PFCON_LOGIN_WINDOW_SECONDS")
    header_timeout_seconds: float = Field(10.0, gt=0, validation_alias="PFCON_HEADER_TIMEOUT_SECONDS")
    prefect_deadline_seconds: float = Field(30.0, gt=0, validation_alias="PFCON_PREFECT_DEADLINE_SECONDS")
    janitor_seconds: float = Field(300.0, ge=0, validation_alias="PFCON_JANITOR_SECONDS")
    janitor_grace_seconds: float = Field(60.0, ge=0, validation_alias="PFCON_JANITOR_GRACE_SECONDS")
    deployment_name: str = Field("pfcon", validation_alias="PFCON_DEPLOYMENT")
    runner_concurrency: int = Field(16, validation_alias="PFCON_RUNNER_CONCURRENCY")
    runner_poll_seconds: float = Field(2.0, validation_alias="PFCON_RUNNER_POLL_SECONDS")
    job_idle_seconds: float = Field(7 * 24 * 3600.0, gt=0, validation_alias="PFCON_JOB_IDLE_SECONDS")

    @field_validator("container_env", mode="before")
    @classmethod
    def _aliases(cls, value: str) -> str:
        if value == "cromwell":
            raise ValueError("cromwell is no longer supported (as in pfcon); use slurm")
        return {"podman": "docker", "openshift": "kubernetes"}.get(value, value)

    @model_validator(mode="after")
    def _pfcon_start_up_checks(self) -> PfconSettings:
        """pfcon's defaults and start-up checks for the variables a site sets."""
        given = self.model_fields_set
        if self.innetwork is not None:
            if "storage_env" not in given:
                self.storage_env = "swift" if self.innetwork else "zipfile"
            elif self.innetwork == (self.storage_env == "zipfile"):
                raise ValueError(
                    f"STORAGE_ENV={self.storage_env} needs PFCON_INNETWORK="
                    f"{'false' if self.storage_env == 'zipfile' else 'true'}"
                )
        allowed = VOLUME_TYPES[self.container_env]
        if self.compute_volume_type is None:
            self.compute_volume_type = allowed[0]
        elif self.compute_volume_type not in allowed:
            raise ValueError(
                f"COMPUTE_VOLUME_TYPE={self.compute_volume_type} is not valid for "
                f"CONTAINER_ENV={self.container_env} (allowed: {', '.join(allowed)})"
            )
        if self.compute_volume_type == "kubernetes_pvc" and not self.volume_name:
            raise ValueError("COMPUTE_VOLUME_TYPE=kubernetes_pvc needs VOLUME_NAME (the storeBase's PVC)")
        if self.application_mode == PRODUCTION:
            missing = [name for name, field in (("SECRET_KEY", "secret_key"), ("PFCON_USER", "user"),
                                                ("PFCON_PASSWORD", "password")) if field not in given]
            if missing:
                raise ValueError(f"APPLICATION_MODE=production needs {', '.join(missing)}")
            if self.password == DEV_PASSWORD or not self.secret_key:
                raise ValueError("APPLICATION_MODE=production refuses the default password and an empty SECRET_KEY")
        return self

    def resolved_secret_key(self) -> str:
        """``SECRET_KEY``, or a random key kept in the state dir so tokens survive restarts."""
        if self.secret_key:
            return self.secret_key
        return read_or_create_secret(self.state_dir / "secret_key", lambda: secrets.token_urlsafe(48))

    def resolved_prefect_auth_string(self) -> str:
        """The local Prefect server's credentials (``user:password``, HTTP basic):
        ``PREFECT_SERVER_API_AUTH_STRING`` or ``PREFECT_API_AUTH_STRING``, else made once and
        kept in the state dir (``prefect-auth``)."""
        if value := self.prefect_auth_string.get_secret_value():
            return value
        return read_or_create_secret(
            self.state_dir / PREFECT_AUTH_FILE, lambda: f"admin:{secrets.token_urlsafe(32)}"
        )

    def prefect_auth_source(self) -> str:
        """Where ``resolved_prefect_auth_string`` comes from, for people who log in."""
        if self.prefect_auth_string.get_secret_value():
            return "given in PREFECT_SERVER_API_AUTH_STRING or PREFECT_API_AUTH_STRING"
        return f"in {self.state_dir / PREFECT_AUTH_FILE}"
