"""Operator notifications: Prefect automations that call a webhook block when a plugin step
fails or runs longer than ``PFCON_NOTIFY_RUNNING_SECONDS``.

The receiving URL is the Webhook block ``pfcon-notify``, which an operator edits in the Prefect
UI; ``PFCON_NOTIFY_URL`` only creates it when it is missing. Prefect's own services evaluate the
automations on the plugin task runs' state events and make the call, with a JSON body naming the
jid, image, step, state and message.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from prefect.automations import AutomationCore
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from prefect_pfcon.settings import PfconSettings

logger = logging.getLogger("prefect_pfcon")

WEBHOOK_BLOCK = "pfcon-notify"
PLUGIN_FAILED = "pfcon-plugin-failed"
PLUGIN_RUNNING_LONG = "pfcon-plugin-running-long"
PLUGIN_TAG = "prefect.tag.step:plugin"
PLUGIN_ENDED = {"prefect.task-run.Completed", "prefect.task-run.Failed", "prefect.task-run.Crashed",
                "prefect.task-run.Cancelled"}


def payload(reason: str) -> str:
    """The webhook's JSON body (a Jinja template Prefect renders with the event): the reason,
    and the jid, image, step, state and message of the plugin task run."""
    return (
        '{%- set tags = namespace(jid="", image="") -%}'
        "{%- for tag in event.payload.task_run.tags -%}"
        '{%- if tag.startswith("jid:") %}{% set tags.jid = tag[4:] %}{% endif -%}'
        '{%- if tag.startswith("image:") %}{% set tags.image = tag[6:] %}{% endif -%}'
        "{%- endfor -%}"
        f'{{"reason": "{reason}", "jid": {{{{ tags.jid | tojson }}}}, "image": {{{{ tags.image | tojson }}}}, '
        '"step": "plugin", "task_run": {{ event.resource["prefect.resource.name"] | tojson }}, '
        '"state": {{ event.resource["prefect.state-name"] | tojson }}, '
        '"message": {{ event.resource["prefect.state-message"] | tojson }}}'
    )


def automations(webhook_id: object, running_seconds: float) -> list[AutomationCore]:
    """The two automations, both calling the webhook block ``webhook_id``."""
    plugin = {"prefect.resource.role": "tag", "prefect.resource.id": PLUGIN_TAG}
    task_runs = {"prefect.resource.id": "prefect.task-run.*"}
    return [
        AutomationCore(
            name=PLUGIN_FAILED, description="A pfcon plugin step failed or crashed",
            trigger=EventTrigger(match=task_runs, match_related=plugin, posture=Posture.Reactive, threshold=1,
                                 expect={"prefect.task-run.Failed", "prefect.task-run.Crashed"}),
            actions=[CallWebhook(block_document_id=webhook_id, payload=payload("plugin-failed"))]),
        AutomationCore(
            name=PLUGIN_RUNNING_LONG,
            description=f"A pfcon plugin step has run longer than {running_seconds:g} s",
            trigger=EventTrigger(match=task_runs, match_related=plugin, posture=Posture.Proactive, threshold=1,
                                 after={"prefect.task-run.Running"}, expect=PLUGIN_ENDED,
                                 for_each={"prefect.resource.id"}, within=timedelta(seconds=running_seconds)),
            actions=[CallWebhook(block_document_id=webhook_id, payload=payload("plugin-running-long"))]),
    ]


async def register_notifications(settings: PfconSettings) -> bool:
    """Create the webhook block (from ``PFCON_NOTIFY_URL``) if it is missing, and create or update
    both automations to call it; ``False`` (nothing registered) when there is no block to call."""
    service = settings.service
    try:
        webhook = await Webhook.aload(WEBHOOK_BLOCK)
    except ValueError:  # no such block
        if not service.notify_url:
            return False
        webhook = Webhook(method="POST", url=SecretStr(service.notify_url), allow_private_urls=True)
        await webhook.asave(WEBHOOK_BLOCK)
    async with get_client() as client:
        for automation in automations(webhook._block_document_id, service.notify_running_seconds):
            try:
                existing = await client.read_automations_by_name(automation.name)
            except ObjectNotFound:
                existing = []
            if existing:
                await client.update_automation(existing[0].id, automation)
            else:
                await client.create_automation(automation)
    logger.info("Notifications: plugin failures and plugins running over %g s call the %s webhook block",
                service.notify_running_seconds, WEBHOOK_BLOCK)
    return True

