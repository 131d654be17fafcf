"""A Docker engine of the tests' own, beside the shared one.

It has its own socket, data root, exec root and pidfile, and runs in a network namespace of its
own (``unshare --net``, only ``lo`` up): whatever it does to networks (swarm's ingress sandbox and
``docker_gwbridge``; ``--bridge none``, which deletes the host's ``docker0``) stays there. Its
containers share the host's filesystem, so storeBase bind mounts work as on the shared engine.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker

START_TIMEOUT = 60
SWARM_LISTEN = "127.0.0.1:2377"  # inside the engine's own network namespace: free by construction


class PrivateDockerd:
    """A dockerd this test run starts and stops by PID (no bridge, no iptables changes)."""

    def __init__(self, base: Path, options: tuple[str, ...] = ()) -> None:
        self.base = base
        self.host = f"unix://{base / 'docker.sock'}"
        self.options = options
        self.process: subprocess.Popen | None = None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host)

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = (self.base / "dockerd.log").open("a")
        dockerd = ["dockerd", "--host", self.host, "--data-root", str(self.base / "data"),
                   "--exec-root", str(self.base / "exec"), "--pidfile", str(self.base / "dockerd.pid"),
                   "--bridge", "none", "--iptables=false", *self.options]
        # unshare and sh exec into dockerd: the process's PID is dockerd's
        self.process = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *dockerd],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                self.client().ping()
                return
            except docker.errors.DockerException:
                assert self.process.poll() is None, (self.base / "dockerd.log").read_text()[-2000:]
                time.sleep(0.5)
        raise RuntimeError("private dockerd did not start")

    def load(self, source: docker.DockerClient, *images: str) -> None:
        """Copy ``images`` from another engine (nothing can be pulled here)."""
        for image in images:
            self.client().images.load(b"".join(source.images.get(image).save(named=True)))

    def swarm_init(self) -> None:
        """Make this engine a single-node swarm's manager."""
        self.client().swarm.init(advertise_addr="127.0.0.1", listen_addr=SWARM_LISTEN)

    def swarm_leave(self) -> None:
        self.client().swarm.leave(force=True)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()  # without live-restore, the engine kills its containers
        self.process.wait(timeout=60)
