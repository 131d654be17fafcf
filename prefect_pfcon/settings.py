"""Service configuration, read from the environment with pfcon's variable names.

One section per concern: ``service`` (the API and the runner), ``storage`` and ``compute``,
the last two with a nested section per storage mode and per compute backend. A section's
fields are named like the fields of the block it describes, so a block is made from
``model_dump()``; the fields that only choose or name a block are left out of the dump.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (AliasChoices, BeforeValidator, Field, PlainSerializer, SecretStr, field_validator,
                      model_validator)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL, DotenvType

from prefect_pfcon.lib.job_template import check_job_template, read_job_template
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


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _from_text(parse: Callable[[str], Any]) -> BeforeValidator:
    """A variable's text parsed with ``parse``; other values (the defaults) pass as they are."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


# a block keeps paths as text; variables holding lists and maps are pfcon's plain text, not JSON
PathText = Annotated[Path, PlainSerializer(str, return_type=str)]
KeyValues = Annotated[dict[str, str], NoDecode, _from_text(parse_key_values)]
Names = Annotated[list[str], NoDecode, _from_text(_names)]
ShellWords = Annotated[list[str], NoDecode, _from_text(shlex.split)]


def _job_template(value: Any) -> dict[str, Any] | None:
    """A job template file's manifest (an empty variable: none), or a manifest given as such."""
    if isinstance(value, (str, Path)):
        return read_job_template(value) if str(value) else None
    return None if value is None else check_job_template(value)


# a variable holding the path of a YAML or JSON file, read into the manifest it holds
JobTemplateFile = Annotated[dict[str, Any] | None, NoDecode, BeforeValidator(_job_template)]


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Section)


class Section(BaseSettings):
    """Settings of one concern, read from the environment and ``.env`` by variable name (a
    field's alias; never by the field's own name: ``USER`` or ``KEY`` are not settings).

    Overrides are given by variable name too (``PfconSettings(PFCON_PORT=8080)``); every
    nested section is read with the same overrides and the same ``_env_file``, and takes
    those of its own variables.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    def __init__(self, _env_file: DotenvType | None = ENV_FILE_SENTINEL, **values: Any) -> None:
        sections = {
            name: field.annotation(_env_file=_env_file, **values)
            for name, field in type(self).model_fields.items() if _is_section(field.annotation)
        }
        super().__init__(_env_file=_env_file, **values, **sections)


SectionT = TypeVar("SectionT", bound=Section)
# a nested section: the one ``Section.__init__`` builds (a variable of the section's name,
# ``SWIFT``, ``COMPUTE`` ..., is taken as text and overridden), left out of its parent's dump
Nested = Annotated[SectionT, NoDecode, Field(exclude=True)]


class ServiceSettings(Section):
    """The pfcon API, its limits, its state directory and the embedded runner."""

    host: str = Field("127.0.0.1", validation_alias="PFCON_HOST")
    port: int = Field(30006, validation_alias="PFCON_PORT")
    user: str = Field("pfcon", validation_alias="PFCON_USER")
    password: str = Field(DEV_PASSWORD, validation_alias="PFCON_PASSWORD")
    secret_key: str = Field("", validation_alias="SECRET_KEY")
    application_mode: str | None = Field(None, validation_alias="APPLICATION_MODE")
    prefect_auth_string: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING"),
    )
    state_dir: Path = Field(
        Path.home() / ".prefect-pfcon", validation_alias="PFCON_STATE_DIR"
    )
    max_upload_mb: int = Field(10240, ge=1, validation_alias="PFCON_MAX_UPLOAD_MB")
    legacy_wait_seconds: float = Field(600, gt=0, validation_alias="PFCON_LEGACY_WAIT_SECONDS")
    login_max_failures: int = Field(10, ge=1, validation_alias="PFCON_LOGIN_MAX_FAILURES")
    login_window_seconds: float = Field(60.0, gt=0, validation_alias="PFCON_LOGIN_WINDOW_SECONDS")
    header_timeout_seconds: float = Field(10.0, gt=0, validation_alias="PFCON_HEADER_TIMEOUT_SECONDS")
    prefect_deadline_seconds: float = Field(30.0, gt=0, validation_alias="PFCON_PREFECT_DEADLINE_SECONDS")
    status_timeout_seconds: float = Field(5.0, gt=0, validation_alias="PFCON_STATUS_TIMEOUT_SECONDS")
    janitor_seconds: float = Field(300.0, ge=0, validation_alias="PFCON_JANITOR_SECONDS")
    janitor_grace_seconds: float = Field(60.0, ge=0, validation_alias="PFCON_JANITOR_GRACE_SECONDS")
    deployment_name: str = Field("pfcon", validation_alias="PFCON_DEPLOYMENT")
    runner_concurrency: int = Field(16, validation_alias="PFCON_RUNNER_CONCURRENCY")
    runner_poll_seconds: float = Field(60.0, validation_alias="PFCON_RUNNER_POLL_SECONDS")
    job_idle_seconds: float = Field(7 * 24 * 3600.0, gt=0, validation_alias="PFCON_JOB_IDLE_SECONDS")
    metrics_token_required: bool = Field(False, validation_alias="PFCON_METRICS_TOKEN_REQUIRED")
    history_days: float = Field(30.0, gt=1 / 24, validation_alias="PFCON_HISTORY_DAYS")
    delete_stops_plugin: bool = Field(False, validation_alias="PFCON_DELETE_STOPS_PLUGIN")
    max_waiting_plugins: int | None = Field(None, ge=1, validation_alias="PFCON_MAX_WAITING_PLUGINS")
    notify_url: str = Field("", validation_alias="PFCON_NOTIFY_URL")
    notify_running_seconds: float = Field(86400.0, ge=10, validation_alias="PFCON_NOTIFY_RUNNING_SECONDS")

    @model_validator(mode="after")
    def _production_check(self) -> ServiceSettings:
        """pfcon's start-up check of a production site."""
        if self.application_mode == PRODUCTION:
            given = self.model_fields_set
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


class FSLinkSettings(Section):
    """``FSLinkStorage``'s own fields."""

    hardlink_inputs: bool = Field(True, validation_alias="PFCON_HARDLINK_INPUTS")


class ZipfileSettings(Section):
    """``ZipfileStorage``'s own fields."""

    max_unpacked_mb: int = Field(10240, ge=1, validation_alias="PFCON_ZIP_MAX_UNPACKED_MB")


class SwiftSettings(Section):
    """``SwiftStorage``'s own fields."""

    auth_url: str = Field("", validation_alias="SWIFT_AUTH_URL")
    username: str = Field("", validation_alias="SWIFT_USERNAME")
    key: SecretStr = Field(SecretStr(""), validation_alias="SWIFT_KEY")
    container_name: str = Field("users", validation_alias="SWIFT_CONTAINER_NAME")


class S3Settings(Section):
    """``S3Storage``'s own fields."""

    endpoint_url: str = Field("", validation_alias="S3_ENDPOINT_URL")
    access_key: SecretStr = Field(SecretStr(""), validation_alias="S3_ACCESS_KEY")
    secret_key: SecretStr = Field(SecretStr(""), validation_alias="S3_SECRET_KEY")
    bucket_name: str = Field("users", validation_alias="S3_BUCKET_NAME")
    region_name: str = Field("us-east-1", validation_alias="S3_REGION_NAME")


class StorageSettings(Section):
    """The storage block: the fields every mode has, then one section per mode that has more."""

    storage_env: StorageEnv = Field("fslink", validation_alias="STORAGE_ENV", exclude=True)
    innetwork: bool | None = Field(None, validation_alias="PFCON_INNETWORK", exclude=True)
    block_name: str = Field("pfcon-storage", validation_alias="PFCON_STORAGE_BLOCK", exclude=True)

    store_base: PathText = Field(
        Path("/var/local/storeBase"),
        validation_alias=AliasChoices("STOREBASE_MOUNT", "PFCON_STOREBASE"),
    )
    host_store_base: PathText | None = Field(None, validation_alias="STOREBASE")
    transfer_workers: int = Field(10, ge=1, le=64, validation_alias="PFCON_TRANSFER_WORKERS")

    fslink: Nested[FSLinkSettings]
    zipfile: Nested[ZipfileSettings]
    swift: Nested[SwiftSettings]
    s3: Nested[S3Settings]

    @model_validator(mode="after")
    def _innetwork_check(self) -> StorageSettings:
        """pfcon's default mode for ``PFCON_INNETWORK`` and its check against ``STORAGE_ENV``."""
        if self.innetwork is not None:
            if "storage_env" not in self.model_fields_set:
                self.storage_env = "swift" if self.innetwork else "zipfile"
            elif self.innetwork == (self.storage_env == "zipfile"):
                raise ValueError(
                    f"STORAGE_ENV={self.storage_env} needs PFCON_INNETWORK="
                    f"{'false' if self.storage_env == 'zipfile' else 'true'}"
                )
        return self


class SwarmSettings(Section):
    """``SwarmCompute``'s own fields."""

    gpu_resource: str = Field("NVIDIA-GPU", validation_alias="PFCON_SWARM_GPU_RESOURCE")


class SlurmSettings(Section):
    """``SlurmCompute``'s own fields (``work_dir`` defaults to ``slurm`` in the state dir)."""

    work_dir: PathText | None = Field(None, validation_alias="PFCON_SLURM_WORK_DIR")
    runtime: str = Field("docker", validation_alias="PFCON_SLURM_RUNTIME")
    runtime_options: ShellWords = Field(default_factory=list, validation_alias="PFCON_SLURM_RUNTIME_OPTIONS")
    partition: str | None = Field(None, validation_alias="PFCON_SLURM_PARTITION")
    account: str | None = Field(None, validation_alias="PFCON_SLURM_ACCOUNT")
    time_limit: str | None = Field(None, validation_alias="PFCON_SLURM_TIME_LIMIT")
    sbatch_options: ShellWords = Field(default_factory=list, validation_alias="PFCON_SLURM_SBATCH_OPTIONS")


class KubernetesSettings(Section):
    """``KubernetesCompute``'s own fields (its ``store_base`` and ``pvc_name`` come from the
    storage's ``STOREBASE`` and the compute's ``VOLUME_NAME``)."""

    namespace: str = Field("default", validation_alias="JOB_NAMESPACE")
    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG")
    node_selector: KeyValues = Field(default_factory=dict, validation_alias="NODE_SELECTOR")
    image_pull_secrets: Names = Field(default_factory=list, validation_alias="IMAGE_PULL_SECRETS")
    job_template: JobTemplateFile = Field(None, validation_alias="PFCON_KUBERNETES_JOB_TEMPLATE")


class ComputeSettings(Section):
    """The compute block: the fields every backend has, those several have (``network_mode``,
    ``volume_type``; a backend takes them if it has them), then one section per backend that
    has more."""

    container_env: ContainerEnv = Field("docker", validation_alias="CONTAINER_ENV", exclude=True)
    block_name: str = Field("pfcon-compute", validation_alias="PFCON_COMPUTE_BLOCK", exclude=True)
    volume_name: str | None = Field(None, validation_alias="VOLUME_NAME", exclude=True)
    pfcon_selector: str = Field("org.chrisproject.role=pfcon", validation_alias="PFCON_SELECTOR", exclude=True)

    container_user: str | None = Field(None, validation_alias="CONTAINER_USER")
    enable_home_workaround: bool = Field(False, validation_alias="ENABLE_HOME_WORKAROUND")
    shm_size: int | None = Field(None, validation_alias="SHM_SIZE")
    job_labels: KeyValues = Field(default_factory=dict, validation_alias="JOB_LABELS")
    logs_tail: int = Field(1000, validation_alias="JOB_LOGS_TAIL")
    ignore_limits: bool = Field(False, validation_alias="IGNORE_LIMITS")
    remove_jobs: bool = Field(True, validation_alias="REMOVE_JOBS")
    pids_limit: int | None = Field(1024, ge=0, validation_alias="PFCON_PIDS_LIMIT")
    max_job_seconds: int | None = Field(None, ge=0, validation_alias="PFCON_MAX_JOB_SECONDS")
    start_timeout_seconds: int | None = Field(600, ge=0, validation_alias="PFCON_START_TIMEOUT_SECONDS")
    network_mode: str = Field("none", validation_alias="PFCON_NETWORK_MODE")
    volume_type: VolumeType | None = Field(None, validation_alias="COMPUTE_VOLUME_TYPE")
    max_running_plugins: int | None = Field(None, ge=1, validation_alias="PFCON_MAX_RUNNING_PLUGINS")

    swarm: Nested[SwarmSettings]
    slurm: Nested[SlurmSettings]
    kubernetes: Nested[KubernetesSettings]

    @field_validator("container_env", mode="before")
    @classmethod
    def _aliases(cls, value: str) -> str:
        if value == "cromwell":
            raise ValueError("cromwell is no longer supported (as in pfcon); use slurm")
        return {"podman": "docker", "openshift": "kubernetes"}.get(value, value)

    @field_validator("pids_limit", "max_job_seconds", "start_timeout_seconds")
    @classmethod
    def _zero_is_no_limit(cls, value: int | None) -> int | None:
        """``0`` (``PFCON_PIDS_LIMIT``, ``PFCON_MAX_JOB_SECONDS``, ``PFCON_START_TIMEOUT_SECONDS``): no limit."""
        return value or None

    @model_validator(mode="after")
    def _volume_type_check(self) -> ComputeSettings:
        """pfcon's default ``COMPUTE_VOLUME_TYPE`` per ``CONTAINER_ENV`` and its checks."""
        allowed = VOLUME_TYPES[self.container_env]
        if self.volume_type is None:
            self.volume_type = allowed[0]
        elif self.volume_type not in allowed:
            raise ValueError(
                f"COMPUTE_VOLUME_TYPE={self.volume_type} is not valid for "
                f"CONTAINER_ENV={self.container_env} (allowed: {', '.join(allowed)})"
            )
        if self.volume_type == "kubernetes_pvc" and not self.volume_name:
            raise ValueError("COMPUTE_VOLUME_TYPE=kubernetes_pvc needs VOLUME_NAME (the storeBase's PVC)")
        return self


class PfconSettings(Section):
    """Settings of the pfcon-format API and of the blocks it creates on ``up``."""

    service: Nested[ServiceSettings]
    storage: Nested[StorageSettings]
    compute: Nested[ComputeSettings]
