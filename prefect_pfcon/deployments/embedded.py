"""The embedded default: Prefect server, pfcon API and runner in one foreground command."""

from __future__ import annotations

import asyncio
import logging

import httpx
import uvicorn
from prefect.client.orchestration import get_client

from prefect_pfcon.deployments.api.app import API, create_app
from prefect_pfcon.deployments.api.http_protocol import header_timeout_protocol
from prefect_pfcon.deployments.registry import apply_deployments, save_blocks
from prefect_pfcon.deployments.runner import EmbeddedRunner
from prefect_pfcon.deployments.runs import DEPLOYMENT_NAME
from prefect_pfcon.deployments.server import LocalPrefectServer
from prefect_pfcon.settings import PfconSettings

logger = logging.getLogger("prefect_pfcon")

# uvicorn closes an idle connection after 5 s by default; a polling client that reuses one
# just then gets "connection reset". Clients poll every few seconds: keep connections longer.
KEEP_ALIVE_SECONDS = 75


async def serve(settings: PfconSettings, server: LocalPrefectServer | None, ui_url: str) -> None:
    """Run everything until interrupted; print a line with ``ready`` once the API answers."""
    try:
        if server is not None:
            server.start()
            await server.wait_ready()
        await save_blocks(settings)
        embedded = settings.deployment_name == DEPLOYMENT_NAME
        flows = await apply_deployments() if embedded else {}
        async with get_client() as client:
            runner = EmbeddedRunner(
                client, flows, settings.runner_concurrency, settings.runner_poll_seconds
            )
            if embedded:
                recovered = await runner.recover_interrupted()
                if recovered:
                    logger.warning("Rescheduled %d runs interrupted by a previous stop", recovered)
            else:
                logger.warning("Job steps run on the work pool of the pfcon-<step>/%s deployments",
                               settings.deployment_name)
            app = create_app(settings, runner if embedded else None)
            api = uvicorn.Server(
                uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                               timeout_keep_alive=KEEP_ALIVE_SECONDS,
                               http=header_timeout_protocol(settings.header_timeout_seconds))
            )
            background = [asyncio.create_task(_announce_ready(settings, ui_url))]
            if embedded:
                background.append(asyncio.create_task(runner.run()))
            try:
                await api.serve()
            finally:
                for task in background:
                    task.cancel()
    finally:
        if server is not None:
            server.stop()


async def _announce_ready(settings: PfconSettings, ui_url: str) -> None:
    url = f"http://{settings.host}:{settings.port}{API}/"
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url + "health/", timeout=2)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    print(f"prefect-pfcon ready: pfcon API {url} (storage {settings.storage_env}, "
          f"compute {settings.container_env}); Prefect UI {ui_url}", flush=True)
