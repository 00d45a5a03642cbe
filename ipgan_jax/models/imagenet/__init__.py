"""ImageNet target classifiers (Flax linen), each with its reference preprocessing inside.

All take float32 NHWC RGB images in [0, 1] and return float32 logits [B, num_classes] (plus the
penultimate features with ``features=True``), computing in their ``dtype`` field (float32 or
bfloat16, see ``ipgan_jax.models.precision``; preprocessing and BatchNorm statistics stay
float32); variables are ``{'params', 'batch_stats'}`` (VGG-19 has no ``batch_stats``).
Pretrained weights: convert once with ``python -m ipgan_jax.models.imagenet.weights.port``
and load with ``ipgan_jax.models.imagenet.weights.port.load_pretrained(name, ckpt_dir)``.

==================  ===============================  =====  ======================
name                reference                        input  preprocessing (inside)
==================  ===============================  =====  ======================
resnet50            keras.applications.ResNet50      224    caffe (BGR, mean)
vgg19               keras.applications.VGG19         224    caffe (BGR, mean)
inception_v3        keras.applications.InceptionV3   299    tf: 2x - 1
efficientnet_lite0  TF efficientnet/lite (torch)     224    lite: (255x - 127)/128
==================  ===============================  =====  ======================
"""
from __future__ import annotations

import flax.linen as nn

from ipgan_jax.errors import ConfigError
from ipgan_jax.models.imagenet.efficientnet_lite import EfficientNetLite0
from ipgan_jax.models.imagenet.inception import InceptionV3
from ipgan_jax.models.imagenet.resnet import ResNet50
from ipgan_jax.models.imagenet.vgg import VGG19
from ipgan_jax.models.precision import canonical

IMAGENET_CLASSIFIERS = {"resnet50": ResNet50, "vgg19": VGG19, "inception_v3": InceptionV3,
                        "efficientnet_lite0": EfficientNetLite0}
INPUT_SIZE = {"resnet50": 224, "vgg19": 224, "inception_v3": 299, "efficientnet_lite0": 224}
PREPROCESSING = {"resnet50": "caffe", "vgg19": "caffe", "inception_v3": "tf", "efficientnet_lite0": "lite"}


def get_imagenet_classifier(name: str, num_classes: int = 1000, dtype=None) -> nn.Module:
    """Build an (uninitialised) ImageNet classifier module by name, computing in ``dtype``."""
    if name not in IMAGENET_CLASSIFIERS:
        raise ConfigError(f"unknown ImageNet classifier {name!r}; choose one of {sorted(IMAGENET_CLASSIFIERS)}")
    return IMAGENET_CLASSIFIERS[name](num_classes=num_classes, dtype=canonical(dtype))


__all__ = ["IMAGENET_CLASSIFIERS", "INPUT_SIZE", "PREPROCESSING", "get_imagenet_classifier",
           "ResNet50", "VGG19", "InceptionV3", "EfficientNetLite0"]
