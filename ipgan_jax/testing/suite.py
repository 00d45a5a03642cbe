"""Setup shared by tests/conftest.py and the tests: XLA's collective timeouts for the emulated CPU
devices, and a workdir that shares an already trained classifier.

Imports nothing but the standard library: tests/conftest.py reads :data:`COLLECTIVE_TIMEOUTS`
before jax is imported.
"""
import os

# The 8 emulated devices are threads of one process: on a loaded 2-core machine one of them can reach
# an all-reduce more than XLA's default 40 s after the others, and XLA then aborts the process
# (rendezvous.cc "Termination timeout"); tests wait instead.
COLLECTIVE_TIMEOUTS = ("--xla_cpu_collective_call_terminate_timeout_seconds=1800 "
                       "--xla_cpu_collective_call_warn_stuck_timeout_seconds=300")


def sharing_classifier(trained_tiny, workdir):
    """A copy of the tiny config writing to ``workdir``, with trained_tiny's LeNet linked in."""
    c = trained_tiny.copy_and_resolve_references()
    c.workdir = str(workdir)
    if not os.path.exists(f"{c.workdir}/classifiers/lenet"):
        os.makedirs(f"{c.workdir}/classifiers", exist_ok=True)
        os.symlink(f"{trained_tiny.workdir}/classifiers/lenet", f"{c.workdir}/classifiers/lenet")
    return c
