"""Compute blocks: one interface (``ComputeBlock``), one small class per backend."""

from prefect_pfcon.blocks.compute.base import (
    ComputeBlock,
    ComputeError,
    ComputeProbe,
    ComputeUnavailable,
    ContainerJob,
    ContainerState,
    ForeignContainer,
)
from prefect_pfcon.blocks.compute.docker import DockerCompute
from prefect_pfcon.blocks.compute.kubernetes import KubernetesCompute
from prefect_pfcon.blocks.compute.slurm import SlurmCompute
from prefect_pfcon.blocks.compute.swarm import SwarmCompute

COMPUTE_BLOCKS: dict[str, type[ComputeBlock]] = {
    cls.container_env: cls for cls in (DockerCompute, KubernetesCompute, SlurmCompute, SwarmCompute)
}

__all__ = [
    "COMPUTE_BLOCKS",
    "ComputeBlock",
    "ComputeError",
    "ComputeProbe",
    "ComputeUnavailable",
    "ContainerJob",
    "ContainerState",
    "DockerCompute",
    "ForeignContainer",
    "KubernetesCompute",
    "SlurmCompute",
    "SwarmCompute",
]
