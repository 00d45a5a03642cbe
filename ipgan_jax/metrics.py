"""Evaluation metrics as pure functions (definitions from the IP-GAN spec).

All predictions are int [N] class ids, labels int [N]; ``mask`` (bool [N]) marks real (not
padding) examples. Rates are fractions in [0, 1]; a rate over an empty set is NaN.

* ACC: accuracy of f on clean images.
* ASR: among images f classifies correctly, the fraction whose adversarial example is misclassified.
* DSR: among successful adversarial examples, the fraction classified correctly after the defense.
* robust accuracy: accuracy on the defended adversarial examples, over all images.
* SSIM: dm-pix SSIM (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range 1).

These batch counts serve the training monitors; the evaluation harness works on per-image
records instead (``ipgan_jax.eval.records``: worst case per image, pipeline denominators).
"""
from __future__ import annotations

import math

import dm_pix
import jax.numpy as jnp
import numpy as np


def _mask(labels, mask):
    return jnp.ones(labels.shape, bool) if mask is None else jnp.asarray(mask, bool)


def counts(pred_clean, pred_adv, pred_defended, labels, mask=None) -> dict:
    """Integer counts from which every rate is built (sum these over batches)."""
    m = _mask(labels, mask)
    clean_ok = (pred_clean == labels) & m
    fooled = clean_ok & (pred_adv != labels)
    return {
        "n": jnp.sum(m), "clean_correct": jnp.sum(clean_ok), "attack_success": jnp.sum(fooled),
        "defended": jnp.sum(fooled & (pred_defended == labels)),
        "robust_correct": jnp.sum((pred_defended == labels) & m),
        "adv_correct": jnp.sum((pred_adv == labels) & m),
    }


def rates(c: dict) -> dict:
    """ACC, ASR, DSR, robust accuracy (and undefended adversarial accuracy) from summed counts."""
    def div(a, b):
        return float(a) / float(b) if float(b) > 0 else float("nan")
    return {"acc": div(c["clean_correct"], c["n"]), "asr": div(c["attack_success"], c["clean_correct"]),
            "dsr": div(c["defended"], c["attack_success"]), "robust_acc": div(c["robust_correct"], c["n"]),
            "adv_acc": div(c["adv_correct"], c["n"])}


def accuracy(pred, labels, mask=None):
    m = _mask(labels, mask)
    return jnp.sum((pred == labels) & m) / jnp.maximum(jnp.sum(m), 1)


def attack_success_rate(pred_clean, pred_adv, labels, mask=None):
    return rates(counts(pred_clean, pred_adv, pred_adv, labels, mask))["asr"]


def defense_success_rate(pred_clean, pred_adv, pred_defended, labels, mask=None):
    return rates(counts(pred_clean, pred_adv, pred_defended, labels, mask))["dsr"]


def ssim(x, y):
    """Per-image SSIM, float [B], of images [B, H, W, C] in [0, 1]."""
    return dm_pix.ssim(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), max_val=1.0,
                       filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial rate; (nan, nan) when n == 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def l2_distortion(x, x_adv):
    """Per-image L2 norm of the perturbation, float [B]."""
    return jnp.sqrt(jnp.sum(jnp.square((x_adv - x).reshape(x.shape[0], -1)), -1))


def median(values) -> float:
    v = np.asarray(values, np.float64)
    return float(np.median(v)) if v.size else float("nan")
