"""Input checks and the per-model preprocessing that lives inside each ImageNet wrapper.

Every ImageNet classifier takes float32 NHWC RGB pixels in [0, 1]; attacks and the IP-GAN
generator work in that space. The reference preprocessing is applied inside the model:

* ``caffe`` (Keras ResNet50 / VGG19): x*255, RGB->BGR, minus the BGR ImageNet mean
  [103.939, 116.779, 123.68]; no scaling.
* ``tf`` (Keras InceptionV3): x*2 - 1, i.e. [-1, 1].
* ``lite`` (EfficientNet-Lite, TF reference ``efficientnet/lite``): (x*255 - 127) / 128,
  which is [-1, 1] up to half a grey level.
"""
from __future__ import annotations

import jax.numpy as jnp

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def caffe(x):
    x = x * 255.0
    return x[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, x.dtype)


def tf(x):
    return x * 2.0 - 1.0


def lite(x):
    return (x * 255.0 - 127.0) / 128.0


PREPROCESSING = {"caffe": caffe, "tf": tf, "lite": lite}


def check_input(x, size: int, model: str):
    """Raise a clear ValueError unless x is [B, size, size, 3]; return x as float32."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4 or tuple(shape[1:]) != (size, size, 3):
        hint = ""
        if shape is not None and len(shape) == 4 and shape[1] == 3 and shape[-1] != 3:
            hint = " (looks like NCHW: transpose to NHWC)"
        elif shape is not None and len(shape) == 4 and shape[-1] != 3:
            hint = f" (got {shape[-1]} channels: RGB images have 3)"
        raise ValueError(f"{model} expects float32 RGB images of shape [B, {size}, {size}, 3] (NHWC, "
                         f"pixels in [0, 1]); got shape {tuple(shape) if shape is not None else type(x)}{hint}")
    return jnp.asarray(x, jnp.float32)
