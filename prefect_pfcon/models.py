"""The vocabulary shared by the API and the flows: job steps, statuses and job parameters.

The parameter models are the flow runs' parameters, so each flow run in the Prefect UI
carries exactly what the client sent (after pfcon's validation), but for a plugin job's env
values, which are sealed (``prefect_pfcon.job_secrets``).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from prefect_pfcon.lib.images import image_reference

ImageReference = Annotated[str, AfterValidator(image_reference)]
"""An image reference, refused unless it follows the image reference grammar."""


class JobStep(str, Enum):
    """A pfcon job step; each step is a flow with its own deployment."""

    COPY = "copy"
    PLUGIN = "plugin"
    UPLOAD = "upload"
    DELETE = "delete"

    @property
    def label(self) -> str:
        """The word pfcon uses in its guard messages (``copy``, ``plugin`` ...)."""
        return self.value

    @property
    def url_segment(self) -> str:
        """The API collection of the step, e.g. ``pluginjobs``."""
        return f"{self.value}jobs"

    def container_name(self, jid: str) -> str:
        """pfcon's container name for the step: ``<jid>`` or ``<jid>-<step>``."""
        return jid if self is JobStep.PLUGIN else f"{jid}-{self.value}"


class JobStatus(str, Enum):
    """pfcon's job statuses."""

    NOT_STARTED = "notStarted"
    STARTED = "started"
    FINISHED_SUCCESSFULLY = "finishedSuccessfully"
    FINISHED_WITH_ERROR = "finishedWithError"
    UNDEFINED = "undefined"

    @property
    def is_active(self) -> bool:
        """Whether the job still runs (or will): the delete guard refuses these."""
        return self in (JobStatus.NOT_STARTED, JobStatus.STARTED)

    @property
    def may_be_replaced(self) -> bool:
        """Whether a repeated POST reschedules the job (pfcon's retry semantics)."""
        return self in (JobStatus.FINISHED_WITH_ERROR, JobStatus.UNDEFINED)


class Limits(BaseModel):
    """Resources requested for a job."""

    cpu_limit: int = Field(1000, description="CPU limit in millicores (1000 = one CPU).")
    memory_limit: int = Field(300, description="Memory limit in MiB.")


class CopyJob(Limits):
    """Parameters of a copy step: stage input dirs into the job's key dir."""

    jid: str = Field(description="Job id given by the client.")
    input_dirs: list[str] = Field(default_factory=list, description="Storage paths to stage.")
    output_dir: str = Field(description="Storage path the plugin will write to.")


class PluginJob(Limits):
    """Parameters of a plugin step: run a ChRIS plugin container."""

    jid: str = Field(description="Job id given by the client; also the container name.")
    image: ImageReference = Field(description="Plugin container image.")
    entrypoint: list[str] = Field(description="Command prefix, e.g. ['simpledsapp'].")
    args: list[str] = Field(default_factory=list, description="Plugin arguments.")
    args_path_flags: list[str] = Field(
        default_factory=list,
        description="Flags whose following value is replaced by /share/incoming.",
    )
    type: Literal["fs", "ds", "ts"] = Field(description="Plugin type.")
    auid: str = Field("", description="ChRIS user id (accepted, unused, as in pfcon).")
    number_of_workers: int = Field(1, description="Parallel workers (docker: exactly 1).")
    gpu_limit: int = Field(0, description="Number of GPUs.")
    env: list[str] = Field(
        default_factory=list,
        description="KEY=value environment entries; values read <sealed> when sealed_env holds them.",
    )
    sealed_env: str | None = Field(
        None, description="The real env entries, sealed by the API (only the plugin flow opens them)."
    )
    input_dirs: list[str] = Field(default_factory=list, description="Storage input paths.")
    output_dir: str | None = Field(None, description="Storage output path (in-network).")


class UploadJob(Limits):
    """Parameters of an upload step: push outputs to object storage."""

    jid: str
    job_output_path: str = Field(description="Storage path the outputs go to.")


class DeleteJob(Limits):
    """Parameters of a delete step: remove the job's key dir."""

    jid: str


# ----- whole jobs, as operators start them from the Prefect UI -------------------------------


class PluginSpec(BaseModel):
    """A ChRIS plugin and how to run it (the fields CUBE sends in a plugin POST)."""

    image: ImageReference = Field(description="Plugin image on the compute backend, e.g. fnndsc/pl-simpledsapp.")
    entrypoint: list[str] = Field(description="Command prefix, e.g. ['simpledsapp'].")
    args: list[str] = Field(default_factory=list, description="Plugin arguments, e.g. ['--prefix', 'le'].")
    args_path_flags: list[str] = Field(
        default_factory=list, description="Flags whose following value is replaced by /share/incoming."
    )
    type: Literal["fs", "ds", "ts"] = Field("ds", description="Plugin type: ds reads inputs, fs does not.")
    env: list[str] = Field(default_factory=list, description="KEY=value environment entries.")
    cpu_limit: int = Field(1000, description="CPU limit in millicores (1000 = one CPU).")
    memory_limit: int = Field(300, description="Memory limit in MiB.")
    gpu_limit: int = Field(0, description="Number of GPUs.")
    number_of_workers: int = Field(1, description="Parallel workers (docker and slurm: exactly 1).")


class ChrisJob(BaseModel):
    """One whole pfcon job: stage the inputs, run the plugin, upload, clean up."""

    plugin: PluginSpec = Field(description="The plugin to run.")
    input_dirs: list[str] = Field(description="Storage paths of the inputs, e.g. ['home/alice/uploads'].")
    output_dir: str = Field(description="Storage path the outputs go to, e.g. 'home/alice/feeds/out'.")
    jid: str | None = Field(
        None, description="Job id (also the container name); default: derived from the flow run."
    )

    def plugin_job(self, jid: str) -> PluginJob:
        """The plugin step's parameters."""
        return PluginJob(
            jid=jid, input_dirs=self.input_dirs, output_dir=self.output_dir, **self.plugin.model_dump()
        )


class InputSelection(BaseModel):
    """Existing inputs to reprocess: listed storage paths, a glob over the storage, or both."""

    dirs: list[str] = Field(default_factory=list, description="Storage paths, e.g. ['home/alice/uploads/s1'].")
    glob: str | None = Field(
        None,
        description="Storage paths matching this glob (on the storeBase, or object prefixes in "
        "Swift), e.g. 'home/*/uploads/*'.",
    )
