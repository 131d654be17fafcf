"""S3 object storage through s3fs (fsspec's S3 filesystem), set up for any S3-compatible server.

Paths are ``<bucket>/<key>``. Requests use path-style addressing and send checksums only where
the API requires them (botocore's default CRC headers are refused by many non-AWS servers).
Listings are never cached (other processes write the same bucket); the filesystem itself, with
its client and connections, is reused for the same endpoint, keys and settings (fsspec's
instance cache), since creating an S3 client takes a few hundred milliseconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from fsspec.callbacks import DEFAULT_CALLBACK
from s3fs import S3FileSystem

MAX_ATTEMPTS = 3
"""botocore's attempts per request (s3fs retries a failed connection a few times more)."""
PART_BYTES = 8 * 2**20
"""Ranges and parts a large object moves in (s3fs's own 50 MiB, times its concurrency, would
hold half a gigabyte per object in memory)."""
MAX_PARTS = 1000
"""Most parts of one upload that every server takes (Swift's s3api: 1000; AWS: 10,000)."""


class BoundedS3FileSystem(S3FileSystem):
    """s3fs moving large objects in ``PART_BYTES`` pieces, so memory stays bounded."""

    async def _put_file(
        self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK, chunksize: int | None = None, **kwargs: Any
    ) -> None:
        if chunksize is None and os.path.isfile(lpath):
            chunksize = max(PART_BYTES, math.ceil(os.path.getsize(lpath) / MAX_PARTS))
        await super()._put_file(lpath, rpath, callback=callback, chunksize=chunksize, **kwargs)


def s3_filesystem(
    endpoint_url: str, access_key: str, secret_key: str, region_name: str, *, max_concurrency: int = 10,
    timeout: float | None = None,
) -> BoundedS3FileSystem:
    """An S3 filesystem for one endpoint and key pair; ``max_concurrency`` parts of a large
    object move at once; with ``timeout``, each request is tried once within it."""
    limits = {"connect_timeout": timeout, "read_timeout": timeout} if timeout else {}
    return BoundedS3FileSystem(
        key=access_key,
        secret=secret_key,
        endpoint_url=endpoint_url,
        client_kwargs={"region_name": region_name},
        config_kwargs={
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "retries": {"max_attempts": 1 if timeout else MAX_ATTEMPTS, "mode": "standard"},
            **limits,
        },
        max_concurrency=max_concurrency,
        default_block_size=PART_BYTES,
        use_listings_cache=False,
    )


class S3Error(RuntimeError):
    """An S3 failure, told in one readable line (never with credentials)."""


def _botocore_error(error: BaseException) -> BaseException | None:
    """The botocore exception behind ``error`` (s3fs re-raises them as ``OSError``s)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (ClientError, BotoCoreError)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe(error: BaseException, endpoint_url: str) -> str | None:
    """``S3: <what> (<code>)`` for a botocore failure, else ``None``."""
    cause = _botocore_error(error)
    if isinstance(cause, ClientError):
        details = cause.response.get("Error", {})
        message = str(details.get("Message") or "request failed").rstrip(".")
        return f"S3: {message} ({details.get('Code', 'unknown')})"
    if isinstance(cause, EndpointConnectionError):
        return f"S3: Could not connect to the endpoint URL {endpoint_url} (EndpointConnectionError)"
    if isinstance(cause, BotoCoreError):
        return f"S3: {str(cause).rstrip('.')} ({type(cause).__name__})"
    return None


@contextmanager
def readable_errors(endpoint_url: str) -> Iterator[None]:
    """Re-raise botocore's failures (also inside s3fs's ``OSError``s) as ``S3Error``."""
    try:
        yield
    except Exception as error:
        message = describe(error, endpoint_url)
        if message is None:
            raise
        raise S3Error(message) from None
