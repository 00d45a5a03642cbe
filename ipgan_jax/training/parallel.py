"""Data parallelism with ``jax.jit`` + ``Mesh``/``NamedSharding`` (no pmap).

One 1-D mesh axis ``'data'`` over every device of every host. Parameters are replicated,
batches are split along their leading axis. The same code runs on 1 CPU, on 8 emulated
CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and on several hosts
(after ``jax.distributed.initialize()``; see ``maybe_initialize_distributed``).
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ipgan_jax.errors import ConfigError

DATA_AXIS = "data"


def maybe_initialize_distributed(enabled: bool = False) -> None:
    """Call ``jax.distributed.initialize()`` when asked by the config or the environment.

    Launch one process per host with the usual variables (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), or on a managed cluster (SLURM, TPU pods)
    where JAX auto-detects them, and set ``--config.distributed=True`` or ``IPGAN_DISTRIBUTED=1``.
    CPU processes exchange collectives through gloo (JAX's CPU default has none across processes;
    GPU and TPU collectives are unaffected); ``JAX_CPU_COLLECTIVES_IMPLEMENTATION`` overrides it.
    """
    if enabled or os.environ.get("IPGAN_DISTRIBUTED") == "1":
        if not jax.distributed.is_initialized():
            jax.config.update("jax_cpu_collectives_implementation",
                              os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION", "gloo"))
            env = {k: os.environ.get(v) for k, v in (("coordinator_address", "JAX_COORDINATOR_ADDRESS"),
                                                     ("num_processes", "JAX_NUM_PROCESSES"),
                                                     ("process_id", "JAX_PROCESS_ID"))}
            # jax reads JAX_COORDINATOR_ADDRESS itself but not the other two: pass them (None: auto-detect)
            jax.distributed.initialize(
                coordinator_address=env["coordinator_address"],
                num_processes=None if env["num_processes"] is None else int(env["num_processes"]),
                process_id=None if env["process_id"] is None else int(env["process_id"]))


def make_mesh(devices=None) -> Mesh:
    """1-D ``'data'`` mesh over ``devices`` (default: all devices of all hosts)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch_size % n:
        raise ConfigError(f"batch_size={global_batch_size} must be divisible by the number of devices ({n}); "
                          f"use a multiple of {n}")


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Host-local numpy batch -> global jax arrays split over the 'data' axis."""
    sharding = data_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))
