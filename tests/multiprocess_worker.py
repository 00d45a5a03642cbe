"""One process of the two-process test (tests/test_multiprocess.py); not a test itself.

    python tests/multiprocess_worker.py WORKDIR OUT_NPZ [PROCESS_ID NUM_PROCESSES PORT]

Trains the tiny LeNet, then 4 IP-GAN steps on it, data-parallel over every device of every process
(each process feeds its own slice of each global batch) and writes the exported classifier and
generator parameters, flattened, to OUT_NPZ
(process 0 only). Without the last three arguments it runs as a single process.
``IPGAN_WORKER_FAIL_VERIFY=1``: process 0's first checkpoint fails to verify (every process must stop).
Imports ``ipgan_jax`` and ``configs`` as installed (``pip install -e .``), from any working directory.
"""
import os
import sys

os.environ.setdefault("IPGAN_PROGRESS", "0")


def main(workdir, out, process_id=None, num_processes=None, port=None):
    import faulthandler
    # a hang shows up in the test's failure output as every thread's stack (the test waits 600 s)
    faulthandler.dump_traceback_later(float(os.environ.get("IPGAN_WORKER_STACK_AFTER", "480")), exit=True)
    import jax
    if process_id is not None:   # the library's own path: environment variables + maybe_initialize_distributed
        os.environ.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(num_processes),
                          JAX_PROCESS_ID=str(process_id))
        from ipgan_jax.training.parallel import maybe_initialize_distributed
        maybe_initialize_distributed(True)
    import numpy as np

    from configs import mnist_tiny
    if os.environ.get("IPGAN_WORKER_FAIL_VERIFY") == "1" and jax.process_index() == 0:
        # process 0 alone sees its freshly written checkpoint fail to verify (a disk error)
        from ipgan_jax.training import checkpoint
        checkpoint.verify_folder = lambda folder: (None, "injected disk error")
    from ipgan_jax.training.classifier import load_classifier, train_classifier
    c = mnist_tiny.get_config()
    c.workdir = workdir
    c.classifier_train.update(num_steps=8, checkpoint_every=4, log_every=4)
    result = train_classifier(c)
    target = load_classifier(c)
    variables = target[1]
    # then 4 IP-GAN steps (tiny config, batch 32) on the classifier just trained
    from ipgan_jax.defenses.registry import defense_dir, make_trainer
    from ipgan_jax.defenses.train import train_defense
    from ipgan_jax.training.checkpoint import restore_params
    c.train.update(num_steps=4, checkpoint_every=2, eval_every=2, sample_every=4)
    train_defense(c)
    trainer = make_trainer(c, *target)
    abstract = jax.eval_shape(lambda: trainer.defense_params(trainer.init_state(jax.random.PRNGKey(0))))
    generator = restore_params(defense_dir(c) / "params", abstract, "defense params")
    if jax.process_index() == 0:
        flat = {jax.tree_util.keystr(k): np.asarray(v)
                for k, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
        flat.update({"ipgan" + jax.tree_util.keystr(k): np.asarray(v)
                     for k, v in jax.tree_util.tree_flatten_with_path(generator)[0]})
        np.savez(out, test_accuracy=result["test_accuracy"], process_count=jax.process_count(),
                 device_count=jax.device_count(), **flat)


if __name__ == "__main__":
    main(*sys.argv[1:])
