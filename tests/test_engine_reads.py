"""A container engine's transient errors on reads: ``state`` and ``logs`` ask again, and an
error that persists is "compute unavailable" (503), never a 500.

A fake engine API stands in here, because the real fault cannot be caused on demand: podman
answers 500 ("read /proc/<pid>/cgroup: no such process") to reads of a container for the moment
it takes to exit. tests/test_podman_lifecycle.py polls through that moment on a real podman.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import requests
from docker.errors import APIError

from prefect_pfcon.blocks.compute import ComputeUnavailable
from prefect_pfcon.blocks.compute.docker import DockerCompute
from prefect_pfcon.blocks.compute.engine import READ_ATTEMPTS

INSPECTED = {"State": {"Status": "exited", "Running": False, "ExitCode": 0, "FinishedAt": "2026-12-03T10:00:00Z"},
             "Config": {"Labels": {}}}


def engine_error(status: int) -> APIError:
    response = requests.Response()
    response.status_code = status
    return APIError(f"{status} Server Error", response, explanation="read /proc/3640/cgroup: no such process")


class FlakyEngine:
    """An engine API whose reads fail with ``status`` ``failures`` times, then answer."""

    def __init__(self, failures: int, status: int = 500) -> None:
        self.failures, self.status, self.calls = failures, status, 0

    def _answer(self, value: object) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise engine_error(self.status)
        return value

    def inspect_container(self, name: str) -> dict:
        return self._answer(INSPECTED)

    def logs(self, name: str, **options: object) -> bytes:
        return self._answer(b"hi\n")


def block_on(engine: FlakyEngine) -> DockerCompute:
    block = DockerCompute()
    block._client = SimpleNamespace(api=engine)
    return block


def test_a_transient_engine_error_is_asked_again():
    engine = FlakyEngine(failures=READ_ATTEMPTS - 1)
    assert block_on(engine).state("job").exit_code == 0
    assert engine.calls == READ_ATTEMPTS
    assert block_on(FlakyEngine(failures=READ_ATTEMPTS - 1)).logs("job") == "hi\n"


def test_an_engine_error_that_persists_is_compute_unavailable():
    engine = FlakyEngine(failures=READ_ATTEMPTS)
    with pytest.raises(ComputeUnavailable, match="answered 500: read /proc"):
        block_on(engine).state("job")
    assert engine.calls == READ_ATTEMPTS


def test_a_client_error_is_not_asked_again():
    engine = FlakyEngine(failures=1, status=400)
    with pytest.raises(APIError):
        block_on(engine).state("job")
    assert engine.calls == 1
