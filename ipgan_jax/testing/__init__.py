"""Helpers shared by tests/ and benchmarks/: reference attack fixtures (a trained LeNet-5 and the
MNIST test set, :mod:`.attack_fixtures`), planted masked defenses (:mod:`.masked_defenses`),
optional torch twins of the MNIST classifiers (:mod:`.torch_models`; torch is imported only when
a twin is built) and the test suite's setup helpers (:mod:`.suite`).

Not used by the library: no module of ``ipgan_jax`` outside this package imports it
(tests/test_package.py checks), and importing it imports nothing heavy.
"""
