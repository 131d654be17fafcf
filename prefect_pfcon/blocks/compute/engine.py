"""What the blocks that drive a Docker engine share: the client, and a lost engine in pfcon's terms."""

from __future__ import annotations

import functools
import time
from abc import ABC
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import requests
from http import HTTPStatus

from docker.errors import APIError, DockerException, NotFound
from pydantic import Field, PrivateAttr

from prefect_pfcon.blocks.compute.base import ComputeBlock, ComputeProbe, ComputeUnavailable

T = TypeVar("T")
ENGINE_UNREACHABLE = "The Docker engine cannot be reached (stopped or restarting)"
READ_ATTEMPTS = 3
READ_RETRY_SECONDS = 0.1


def engine_call(method: Callable[..., T]) -> Callable[..., T]:
    """Turn a lost connection to the Docker engine into ``ComputeUnavailable``."""

    @functools.wraps(method)
    def call(self: DockerEngineBlock, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except requests.exceptions.ConnectionError:
            raise ComputeUnavailable(ENGINE_UNREACHABLE) from None

    return call


def engine_read(method: Callable[..., T]) -> Callable[..., T]:
    """``engine_call`` for a read that may be asked again: an engine error (5xx) is retried,
    and one that persists is ``ComputeUnavailable``. Podman answers 500 to reads of a container
    that is exiting ("read /proc/<pid>/cgroup: no such process") for a moment."""

    @functools.wraps(method)
    def read(self: DockerEngineBlock, *args: Any, **kwargs: Any) -> T:
        attempts_left = READ_ATTEMPTS
        while True:
            try:
                return method(self, *args, **kwargs)
            except APIError as error:
                attempts_left -= 1
                if not error.is_server_error():
                    raise
                if not attempts_left:
                    raise ComputeUnavailable(f"The Docker engine answered {error.status_code}: {error.explanation}") \
                        from None
            time.sleep(READ_RETRY_SECONDS)

    return engine_call(read)


class DockerEngineBlock(ComputeBlock, ABC):
    """A compute block that talks to one Docker engine (a host's, or a swarm manager's)."""

    docker_host: str | None = Field(
        None, description="Docker engine URL; defaults to DOCKER_HOST or the local socket."
    )

    _client: docker.DockerClient | None = PrivateAttr(None)

    @property
    def client(self) -> docker.DockerClient:
        """A Docker client, made once per block instance."""
        if self._client is None:
            try:
                self._client = (
                    docker.DockerClient(base_url=self.docker_host)
                    if self.docker_host
                    else docker.from_env()
                )
            except DockerException:  # it asks the engine for its API version
                raise ComputeUnavailable(ENGINE_UNREACHABLE) from None
        return self._client

    def probe(self, timeout: float) -> ComputeProbe:
        """The engine's version (a client of its own, with the short ``timeout``)."""
        try:
            engine = (docker.DockerClient(base_url=self.docker_host, timeout=timeout) if self.docker_host
                      else docker.from_env(timeout=timeout))
            try:
                return ComputeProbe(version=engine.version()["Version"])
            finally:
                engine.close()
        except (DockerException, requests.exceptions.RequestException) as error:
            raise ComputeUnavailable(f"{ENGINE_UNREACHABLE}: {error}") from None

    def kill_container(self, container: str) -> bool:
        """Kill a container by name or id, keeping it; whether the engine has it (one that
        ended already counts)."""
        try:
            self.client.api.kill(container)
        except NotFound:
            return False
        except APIError as error:
            if error.status_code != HTTPStatus.CONFLICT:  # "is not running": it ended already
                raise
        return True
