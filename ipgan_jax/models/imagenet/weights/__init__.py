"""Pretrained ImageNet weights: conversion of downloaded Keras / torch files into orbax checkpoints.

``port`` converts and loads (``python -m ipgan_jax.models.imagenet.weights.port --help``);
``torch_pickle`` reads torch state dicts without importing torch. Nothing is imported here (no
``__all__``), so ``python -m`` runs ``port`` once, as ``__main__``.
"""
