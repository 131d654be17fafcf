"""``GET /api/v1/ops/status/``: whether the service can run jobs, component by component.

Always 200 (a component down is part of the answer), unlike ``/api/v1/health/``, which says
only that the API process answers.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from prefect_pfcon.api.auth import Authenticator
from prefect_pfcon.service.availability import Availability, AvailabilityCheck
from prefect_pfcon.service.metrics import ServiceMetrics
from prefect_pfcon.settings import ServiceSettings

OPS_STATUS = "/api/v1/ops/status/"


def ops_status_router(auth: Authenticator, settings: ServiceSettings, metrics: ServiceMetrics) -> APIRouter:
    """The status route, guarded by the pfcon JWT."""
    router = APIRouter()

    @router.get(OPS_STATUS, dependencies=[Depends(auth)], response_model=Availability,
                response_model_exclude_none=True)
    async def ops_status(request: Request) -> Availability:
        """The Prefect server, the runner, the compute backend and the storage: up or down."""
        return await AvailabilityCheck(request.app.state.jobs, settings, metrics).check()

    return router
