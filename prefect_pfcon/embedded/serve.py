"""The embedded default: Prefect server, pfcon API and runner in one foreground command."""

from __future__ import annotations

import asyncio
import logging

import httpx
import uvicorn
from prefect._internal.concurrency.services import QueueService

from prefect_pfcon.api.app import API, create_app
from prefect_pfcon.api.http_protocol import header_timeout_protocol
from prefect_pfcon.deployments.notifications import register_notifications
from prefect_pfcon.deployments.registry import apply_deployments, apply_plugin_limit, save_blocks
from prefect_pfcon.embedded.local_server import LocalPrefectServer
from prefect_pfcon.names import DEPLOYMENT_NAME
from prefect_pfcon.settings import PfconSettings

logger = logging.getLogger("prefect_pfcon")

# uvicorn closes an idle connection after 5 s by default; a polling client that reuses one
# just then gets "connection reset". Clients poll every few seconds: keep connections longer.
KEEP_ALIVE_SECONDS = 75
# On stop: how long requests in progress may finish, and how long Prefect's log and event
# workers may take to send what they hold
GRACEFUL_SHUTDOWN_SECONDS = 5
DRAIN_SECONDS = 5.0


async def serve(settings: PfconSettings, server: LocalPrefectServer | None, ui_url: str) -> None:
    """Run everything until interrupted; print a line with ``ready`` once the API answers.

    Stopping goes in order: the API and the runner, then the log lines and events Prefect
    still holds are sent (within ``DRAIN_SECONDS``) while the server is up, then the server.
    """
    try:
        if server is not None:
            server.start()
            await server.wait_ready()
        await _serve_api(settings, ui_url)
    finally:
        await _send_pending_logs_and_events()
        if server is not None:
            server.stop()


async def _serve_api(settings: PfconSettings, ui_url: str) -> None:
    await save_blocks(settings)
    await apply_plugin_limit(settings)
    await register_notifications(settings)
    embedded = settings.service.deployment_name == DEPLOYMENT_NAME
    if not embedded:
        logger.warning("Jobs run on the work pool of the pfcon-job/%s deployment", settings.service.deployment_name)
    app = create_app(settings, await apply_deployments() if embedded else None)
    api = uvicorn.Server(
        # logging left as Prefect configured it: uvicorn's loggers are shared with the local
        # Prefect server, whose level (PREFECT_SERVER_LOGGING_LEVEL) they keep
        uvicorn.Config(app, host=settings.service.host, port=settings.service.port, log_config=None,
                       timeout_keep_alive=KEEP_ALIVE_SECONDS,
                       timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                       http=header_timeout_protocol(settings.service.header_timeout_seconds))
    )
    announcer = asyncio.create_task(_announce_ready(settings, ui_url))
    try:
        await api.serve()
    finally:
        announcer.cancel()
        await asyncio.gather(announcer, return_exceptions=True)


async def _send_pending_logs_and_events() -> None:
    """Stop Prefect's queue services and wait, up to ``DRAIN_SECONDS``, until they have sent
    what they hold. All of them share one registry, so this drains the log worker
    (``APILogWorker``) and the event worker (``EventsWorker``) alike; at interpreter exit
    each would wait for its queue without limit, retrying against a server gone by then."""
    await QueueService.drain_all(timeout=DRAIN_SECONDS, at_exit=False)


async def _announce_ready(settings: PfconSettings, ui_url: str) -> None:
    url = f"http://{settings.service.host}:{settings.service.port}{API}/"
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url + "health/", timeout=2)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    print(f"prefect-pfcon ready: pfcon API {url} (storage {settings.storage.storage_env}, "
          f"compute {settings.compute.container_env}); Prefect UI {ui_url}", flush=True)
