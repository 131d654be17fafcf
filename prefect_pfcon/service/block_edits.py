"""Following block edits on Prefect's event stream, so a step uses the blocks as edited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter

from prefect_pfcon.service.loops import LoopService

BLOCK_EDITS = EventFilter(
    event=EventNameFilter(name=["prefect.block-document.updated", "prefect.block-document.deleted"])
)


class BlockEdits(LoopService):
    """Calls ``on_edit`` (in a thread) whenever a block document is changed or deleted, and
    on each new subscription (edits may have gone unheard), then ``heard`` for each edit;
    subscribes again after a lost stream."""

    def __init__(self, on_edit: Callable[[], None], heard: Callable[[], None],
                 resubscribe_seconds: float = 5.0) -> None:
        super().__init__(resubscribe_seconds)
        self._on_edit = on_edit
        self._heard = heard

    async def run_once(self) -> None:
        async with get_events_subscriber(filter=BLOCK_EDITS) as events:
            await asyncio.to_thread(self._on_edit)
            async for _ in events:
                await asyncio.to_thread(self._on_edit)
                self._heard()
