"""``GET /metrics`` and the middleware that counts every API request by its route template."""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_pfcon.api.auth import Authenticator
from prefect_pfcon.service.metrics import ServiceMetrics

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"  # the route label of a request no route matches


def route_template(scope: Scope) -> str:
    """The path template of the route that answered a request (``/api/v1/pluginjobs/{jid}/``;
    for a 405, the route matching all but the method), else ``unmatched``. The router names it
    in ``scope["route"]``; a request answered before routing (a 413 for its declared length)
    is matched here against the app's top-level routes (the legacy router's are not)."""
    route = scope.get("route")
    if route is None:
        route = next((candidate for candidate in scope["app"].router.routes
                      if isinstance(candidate, Route) and candidate.matches(scope)[0] is Match.FULL), None)
    return getattr(route, "path", None) or UNMATCHED


class RequestMetrics:
    """ASGI middleware: each HTTP request counted by method, route template and status code,
    with its latency until its answer's last byte (an exception that escapes counts as 500)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            self._metrics.request_answered(scope["method"], route_template(scope), code,
                                           time.perf_counter() - started)


def add_metrics(app: FastAPI, metrics: ServiceMetrics, auth: Authenticator, token_required: bool) -> None:
    """Count the app's requests in ``metrics`` and serve them at ``/metrics`` (with the pfcon
    JWT if ``token_required``)."""
    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.get(METRICS_PATH, dependencies=[Depends(auth)] if token_required else [], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """The service's metrics in Prometheus' text format."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
