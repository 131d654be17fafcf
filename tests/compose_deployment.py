"""deploy/compose.yaml brought up by Debian's docker-compose for tests and benchmarks: a project
of its own (unique name, ports, secrets and storeBase volume), the prefect-pfcon image the test
command built, and the pfcon API it serves as a ``Service``."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.models.containers import Container

from conftest import SESSION_LABEL, Service, free_port
from fixtures_tree import make_fslink_fixture

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
IMAGE = os.environ.get("PFCON_TEST_IMAGE", "prefect-pfcon:latest")
SERVICES = ("db", "prefect", "pfcon")
POOL_SERVICES = ("worker",)
"""What keeps running of the pool profile (pool-setup ends once it has deployed)."""
PFCON_PASSWORD = "pfcon1234"  # what Service.token logs in with
READY_SECONDS = 240
PFCON_UID = 1001
"""The image's user: the service and its plugins (CONTAINER_USER) write the storeBase as it."""


@dataclass
class ComposeProject:
    """One docker-compose project of deploy/compose.yaml and its settings file."""

    name: str
    env_file: Path
    profiles: tuple[str, ...] = ()

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        profiles = [flag for profile in self.profiles for flag in ("--profile", profile)]
        return subprocess.run(["docker-compose", "-p", self.name, "-f", str(COMPOSE_FILE),
                               "--env-file", str(self.env_file), *profiles, *args],
                              capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "60").stdout


def project_settings(name: str, **overrides: str) -> dict[str, str]:
    """The settings of a project: fresh secrets, free loopback ports, its own storeBase volume."""
    return {
        "PFCON_IMAGE": IMAGE,
        "PFCON_PASSWORD": PFCON_PASSWORD,
        "SECRET_KEY": secrets.token_hex(24),
        "PREFECT_AUTH_STRING": f"admin:{secrets.token_urlsafe(16)}",
        "DB_PASSWORD": secrets.token_urlsafe(16),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "PFCON_PORT": str(free_port()),
        "PREFECT_PORT": str(free_port()),
        "DB_PORT": str(free_port()),
        "STOREBASE_VOLUME": f"{name}-storebase",
        "KEYS_VOLUME": f"{name}-keys",
        "JOB_LABELS": f"org.test.suite=prefect-pfcon,{SESSION_LABEL}",
        **overrides,
    }


def project_containers(project: ComposeProject) -> dict[str, Container]:
    """The project's running containers by service name."""
    found = docker.from_env().containers.list(filters={"label": f"com.docker.compose.project={project.name}"})
    return {container.labels["com.docker.compose.service"]: container for container in found}


def wait_healthy(project: ComposeProject, services: int, timeout: float = READY_SECONDS) -> None:
    """Wait until ``services`` containers of the project run and the engine finds each healthy
    (what `docker compose up --wait` waits for; Debian's docker-compose 1.29 has no --wait)."""
    deadline = time.monotonic() + timeout
    while True:
        running = project_containers(project).values()
        health = [container.attrs["State"].get("Health", {}).get("Status", "healthy") for container in running]
        if len(health) == services and set(health) == {"healthy"}:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"compose project {project.name} not healthy ({health}):\n{project.logs()}")
        time.sleep(1)


@contextmanager
def compose_deployment(tmp: Path, profiles: tuple[str, ...] = (), **overrides: str) -> Iterator[tuple[Service, ComposeProject]]:
    """deploy/compose.yaml up with ``profiles`` and settings ``overrides``; the API as a
    Service (its storeBase the volume's folder on this host) and the project. Taken down with
    its volumes at the end."""
    name = f"pfcon-test-{uuid.uuid4().hex[:8]}"
    settings = project_settings(name, **overrides)
    env_file = tmp / f"{name}.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env_file.chmod(0o600)
    project = ComposeProject(name, env_file, profiles)
    try:
        started = project.run("up", "-d")
        if started.returncode != 0:
            raise RuntimeError(f"docker-compose up failed:\n{started.stderr}\n{project.logs()}")
        wait_healthy(project, len(SERVICES) + len(POOL_SERVICES) * ("pool" in profiles))
        url = f"http://127.0.0.1:{settings['PFCON_PORT']}/api/v1/"
        volume = docker.from_env().volumes.get(settings["STOREBASE_VOLUME"])
        yield Service(url=url, store_base=Path(volume.attrs["Mountpoint"]),
                      prefect_api_url=f"http://127.0.0.1:{settings['PREFECT_PORT']}/api",
                      prefect_auth=settings["PREFECT_AUTH_STRING"]), project
    finally:
        project.run("down", "-v", "--timeout", "30")
        remove_volume_users(settings["STOREBASE_VOLUME"], settings["KEYS_VOLUME"])
        project.run("down", "-v", "--timeout", "30")  # the volumes, once nothing uses them


@contextmanager
def fslink_deployment(tmp: Path, profiles: tuple[str, ...] = (), **overrides: str) -> Iterator[tuple[Service, ComposeProject]]:
    """``compose_deployment`` with the fslink fixture tree in its storeBase, owned by its user."""
    with compose_deployment(tmp, profiles, **overrides) as (service, project):
        make_fslink_fixture(service.store_base)
        own_tree(service.store_base)
        yield service, project


def remove_volume_users(*volumes: str) -> None:
    """Remove the containers that mount these volumes (flow containers the project's worker
    started, plugin containers left by a failed test): this project's, no one else's."""
    client = docker.from_env()
    for volume in volumes:
        for container in client.containers.list(all=True, ignore_removed=True, filters={"volume": volume}):
            container.remove(force=True)


def own_tree(root: Path) -> None:
    """Give ``root`` and everything under it to the image's user (files tests wrote as root)."""
    for path in (root, *root.rglob("*")):
        os.chown(path, PFCON_UID, PFCON_UID, follow_symlinks=False)
