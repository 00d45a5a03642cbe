"""Models (Flax linen): the target classifiers, IP-GAN's generator and discriminators, and the fusion.

Every model takes float NHWC images in [0, 1] (normalisation lives inside it) and computes in its
``dtype`` field (:mod:`.precision`), with float32 params and outputs. ``get_classifier(name)``
builds an MNIST classifier (lenet | mcnn | alexnet, or ``<arch>_<tag>``) or an ImageNet one
(:mod:`.imagenet`); ``get_generator`` / ``get_discriminator`` build IP-GAN's G and D; ``fuse`` is
the defense ``clip(x_adv + eps_inv * tanh(G(x_adv)), 0, 1)`` and ``FUSION_VIEWS`` its
differentiable views for an attacker. :mod:`.fast_conv` holds the convolutions with CPU-friendly
gradients that the models use. Not imported here: ``imagenet.weights.port``, the command line
``python -m ipgan_jax.models.imagenet.weights.port``.
"""
from ipgan_jax.models import fast_conv, imagenet, precision
from ipgan_jax.models.classifiers import MCNN, MNIST_CLASSIFIERS, AlexNetMNIST, LeNet5, classifier_arch, get_classifier
from ipgan_jax.models.discriminator import DCGANDiscriminator, PatchGANDiscriminator, get_discriminator
from ipgan_jax.models.fusion import (
    FUSION_VIEWS,
    fuse,
    fuse_hybrid,
    fuse_smooth,
    fuse_straight_through,
    inverse_perturbation,
)
from ipgan_jax.models.generator import UNetGenerator, get_generator
from ipgan_jax.models.imagenet import IMAGENET_CLASSIFIERS, INPUT_SIZE, get_imagenet_classifier

__all__ = [
    "fast_conv", "imagenet", "precision",
    "MNIST_CLASSIFIERS", "LeNet5", "MCNN", "AlexNetMNIST", "classifier_arch", "get_classifier",
    "IMAGENET_CLASSIFIERS", "INPUT_SIZE", "get_imagenet_classifier",
    "UNetGenerator", "get_generator", "DCGANDiscriminator", "PatchGANDiscriminator", "get_discriminator",
    "FUSION_VIEWS", "fuse", "fuse_straight_through", "fuse_hybrid", "fuse_smooth", "inverse_perturbation",
]
