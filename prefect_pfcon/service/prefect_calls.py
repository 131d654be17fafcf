"""What the service asks of Prefect, bounded: size limits, refusals, quick retries."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
from prefect._internal.schemas.validators import validate_parameter_size
from prefect.settings import get_current_settings

T = TypeVar("T")
FIRST_RETRY_SECONDS = 0.02
LAST_RETRY_SECONDS = 1.0
NOT_REFUSALS = {401, 403, 408, 429}  # credentials, timeouts, rate limits: the server's, not the request's
MAX_REFUSAL_CHARS = 500


class ParametersTooLarge(ValueError):
    """Parameters larger than the Prefect server accepts for a run."""


class RunRefused(RuntimeError):
    """Prefect refused to create a run because of the request itself: retrying cannot help."""


def check_parameter_size(parameters: dict[str, Any]) -> None:
    """Raise ``ParametersTooLarge`` for parameters over Prefect's limit
    (``PREFECT_SERVER_API_MAX_PARAMETER_SIZE``, 512 KiB by default), measured as Prefect does."""
    try:
        validate_parameter_size(parameters, get_current_settings().server.api.max_parameter_size)
    except ValueError as exc:
        raise ParametersTooLarge(str(exc)) from exc


def refusal(exc: httpx.HTTPStatusError) -> RunRefused | None:
    """A 4xx answer to a creation as a readable ``RunRefused``; ``None`` for other answers."""
    response = exc.response
    if not 400 <= response.status_code < 500 or response.status_code in NOT_REFUSALS:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        detail = body["detail"]
    elif isinstance(body, dict) and isinstance(body.get("exception_detail"), list):
        detail = "; ".join(str(item.get("msg")) for item in body["exception_detail"] if isinstance(item, dict))
    return RunRefused(f"Prefect refused to create the run ({response.status_code}): {detail}"[:MAX_REFUSAL_CHARS])


def retryable(exc: Exception) -> bool:
    """A lost server, or its 503 (busy: on SQLite, a write that lost a race with another)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 503
    return isinstance(exc, httpx.TransportError)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    deadline_seconds: float | None = None,
    retried: Callable[[Exception], None] | None = None,
) -> T:
    """``call()``, retried from 20 ms on while Prefect is lost or busy (within the deadline:
    ``TimeoutError``), telling ``retried`` of each error it retries; a 4xx refusal raises
    ``RunRefused``."""
    delay = FIRST_RETRY_SECONDS
    with anyio.fail_after(deadline_seconds):
        while True:
            try:
                return await call()
            except httpx.HTTPStatusError as exc:
                refused = refusal(exc)
                if refused is not None:
                    raise refused from exc
                if not retryable(exc):
                    raise
                if retried is not None:
                    retried(exc)
            except httpx.TransportError as exc:
                if retried is not None:
                    retried(exc)
            await anyio.sleep(random.uniform(delay / 2, delay))
            delay = min(2 * delay, LAST_RETRY_SECONDS)
