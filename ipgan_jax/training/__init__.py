"""Training: the one loop, checkpoints, data parallelism, metrics, and the target classifiers.

``TrainLoop`` (:mod:`.loop`) runs any trainer (``init_state(rng)``, ``train_step(state, batch,
rng)``) jit-compiled and data-parallel, with ``Periodic`` actions and bit-exact resume from
:class:`Checkpointer` (:mod:`.checkpoint`: orbax checkpoints, exported params, integrity
manifests); :mod:`.parallel` builds the mesh and shardings; :mod:`.logging` writes metrics JSONL
and TensorBoard. ``train_classifier(config, name)`` / ``load_classifier(config, name)``
(:mod:`.classifier`) train and load the target classifiers.
"""
from ipgan_jax.training import checkpoint, classifier, loop, parallel
from ipgan_jax.training.checkpoint import (
    Checkpointer,
    CheckpointError,
    NonFiniteError,
    abstract_like,
    export_params,
    params_meta,
    restore_params,
    tree_fingerprint,
)
from ipgan_jax.training.classifier import load_classifier, train_classifier
from ipgan_jax.training.logging import MetricsWriter, progress, read_metrics
from ipgan_jax.training.loop import (
    Periodic,
    RecipeChangedError,
    TrainLoop,
    WorkdirLockedError,
    itstime,
    jit_train_step,
    recipe_diff,
)
from ipgan_jax.training.parallel import data_sharded, make_mesh, replicate, replicated, shard_batch

__all__ = [
    "checkpoint", "classifier", "loop", "parallel",
    "TrainLoop", "Periodic", "itstime", "jit_train_step", "recipe_diff", "RecipeChangedError", "WorkdirLockedError",
    "Checkpointer", "CheckpointError", "NonFiniteError", "export_params", "restore_params", "params_meta",
    "tree_fingerprint", "abstract_like",
    "make_mesh", "replicated", "data_sharded", "shard_batch", "replicate",
    "MetricsWriter", "read_metrics", "progress",
    "load_classifier", "train_classifier",
]
