"""The storeBase as a Docker named volume (pfcon's ``COMPUTE_VOLUME_TYPE=docker_local_volume``).

Plugin containers need sub-directories of the storeBase (``key-<jid>/incoming``, the output
dir), and an engine cannot mount part of a named volume; so, as pfcon does, they get bind
mounts of the volume's mount point on the engine's host.
"""

from __future__ import annotations

from pathlib import Path

import docker
from docker.errors import DockerException, NotFound


class VolumeNotFound(RuntimeError):
    """No volume could be found for the storeBase; the message says what was looked for."""


def _selected_volume(client: docker.DockerClient, selector: str, store_base_mount: Path) -> str:
    """The volume mounted at ``store_base_mount`` in the container labelled ``selector``
    (the service's own container, as pfcon finds its own)."""
    containers = client.containers.list(filters={"label": selector})
    for container in containers:
        for mount in container.attrs.get("Mounts", []):
            if mount.get("Type") == "volume" and Path(mount.get("Destination", "")) == store_base_mount:
                return mount["Name"]
    raise VolumeNotFound(
        f"no running container labelled {selector} mounts a volume at {store_base_mount}; set VOLUME_NAME"
    )


def volume_mountpoint(volume_name: str | None, selector: str, store_base_mount: Path) -> Path:
    """Where the storeBase volume lives on the engine's host: ``VOLUME_NAME``'s mount point,
    or that of the volume found through ``PFCON_SELECTOR``."""
    try:
        client = docker.from_env()
        name = volume_name or _selected_volume(client, selector, store_base_mount)
        return Path(client.volumes.get(name).attrs["Mountpoint"])
    except NotFound:
        raise VolumeNotFound(f"Docker volume {volume_name!r} does not exist") from None
    except DockerException as error:
        raise VolumeNotFound(f"the Docker engine cannot be asked for the storeBase volume: {error}") from None
