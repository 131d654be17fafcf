"""Whether the service can run jobs now: each component probed at once, each within a short
timeout, a failing one reported down with its error (never raised)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import WorkPoolStatus
from prefect.settings import PREFECT_API_URL
from pydantic import BaseModel

from prefect_pfcon.blocks.compute import ComputeProbe
from prefect_pfcon.blocks.storage.base import StorageProbe
from prefect_pfcon.names import DEPLOYMENT_NAME, JOB_FLOW_NAME
from prefect_pfcon.service.jobs import JobService
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.settings import ServiceSettings

T = TypeVar("T")


class ComponentStatus(BaseModel):
    """Whether a component answered, how fast, and if not, why."""

    up: bool
    latency_ms: float
    error: str | None = None


class PrefectStatus(ComponentStatus):
    """The Prefect server (its ``/health``)."""

    url: str


class RunnerStatus(ComponentStatus):
    """What runs the jobs' flow runs: this process's runner, or a work pool's workers."""

    kind: Literal["embedded", "work-pool"]
    capacity: int | None = None
    running: int | None = None
    waiting: int | None = None
    work_pool: str | None = None
    work_pool_status: str | None = None


class ComputeStatus(ComputeProbe, ComponentStatus):
    """The compute backend."""

    container_env: str


class StorageStatus(StorageProbe, ComponentStatus):
    """The storage: the storeBase, and the object store of swift and s3."""

    storage_env: str
    store_base: str
    free_bytes: int | None = None  # type: ignore[assignment]  # unknown when down
    total_bytes: int | None = None  # type: ignore[assignment]


class Availability(BaseModel):
    """Every component's status; ``available`` when all are up, else ``reason``: the first down."""

    available: bool
    reason: str | None = None
    prefect: PrefectStatus
    runner: RunnerStatus
    compute: ComputeStatus
    storage: StorageStatus


@dataclass(frozen=True)
class Probed:
    """A probe's outcome: its value, or its error, and how long it took."""

    value: Any
    error: str | None
    latency_ms: float

    def fields(self) -> dict[str, Any]:
        """The ``ComponentStatus`` fields."""
        return {"up": self.error is None, "latency_ms": self.latency_ms, "error": self.error}


async def probed(call: Callable[[], Awaitable[T]], timeout: float) -> Probed:
    """``call()`` within ``timeout`` seconds; any failure becomes its text."""
    started = time.monotonic()
    try:
        value, error = await asyncio.wait_for(call(), timeout), None
    except TimeoutError:
        value, error = None, f"no answer within {timeout:g} s"
    except Exception as exc:  # a probe reports, never raises
        value, error = None, str(exc) or type(exc).__name__
    return Probed(value, error, round((time.monotonic() - started) * 1000, 1))


class AvailabilityCheck:
    """Probes the Prefect server, the runner, the compute backend and the storage together."""

    def __init__(self, jobs: JobService, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self._jobs = jobs
        self._settings = settings
        self._metrics = metrics

    async def check(self) -> Availability:
        """Every component's status now."""
        timeout = self._settings.status_timeout_seconds
        compute, storage = self._jobs.compute, self._jobs.storage
        prefect, runner, computed, stored = await asyncio.gather(
            self._prefect(timeout),
            self._runner(timeout),
            probed(lambda: asyncio.to_thread(compute.probe, timeout), timeout),
            probed(lambda: asyncio.to_thread(storage.probe, timeout), timeout),
        )
        components = {
            "prefect": prefect,
            "runner": runner,
            "compute": ComputeStatus(container_env=compute.container_env, **computed.fields(),
                                     **_dumped(computed.value)),
            "storage": StorageStatus(storage_env=storage.storage_env, store_base=storage.store_base,
                                     **stored.fields(), **_dumped(stored.value)),
        }
        down = [(name, status.error) for name, status in components.items() if not status.up]
        reason = f"{down[0][0]}: {down[0][1]}" if down else None
        return Availability(available=not down, reason=reason, **components)

    async def _prefect(self, timeout: float) -> PrefectStatus:
        async def health() -> None:
            async with get_client() as client:
                error = await client.api_healthcheck()
                if error is not None:
                    raise error

        outcome = await probed(health, timeout)
        return PrefectStatus(url=PREFECT_API_URL.value() or "", **outcome.fields())

    async def _runner(self, timeout: float) -> RunnerStatus:
        if self._settings.deployment_name == DEPLOYMENT_NAME:
            load = self._metrics.step_load()
            running, waiting = load if load is not None else (None, None)
            return RunnerStatus(kind="embedded", up=True, latency_ms=0.0, capacity=self._settings.runner_concurrency,
                                running=running, waiting=waiting)

        pool: dict[str, str] = {}

        async def work_pool() -> None:
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(
                    f"{JOB_FLOW_NAME}/{self._settings.deployment_name}")
                pool["name"] = deployment.work_pool_name or ""
                status = (await client.read_work_pool(pool["name"])).status
                pool["status"] = status.value if status is not None else "UNKNOWN"
                if status is not WorkPoolStatus.READY:
                    raise RuntimeError(f"work pool {pool['name']} is {pool['status']} (no worker polls it)")

        outcome = await probed(work_pool, timeout)
        return RunnerStatus(kind="work-pool", work_pool=pool.get("name"), work_pool_status=pool.get("status"),
                            **outcome.fields())


def _dumped(value: Any) -> dict[str, Any]:
    """A probe's model as fields (none when the probe failed)."""
    return value.model_dump() if isinstance(value, BaseModel) else {}
