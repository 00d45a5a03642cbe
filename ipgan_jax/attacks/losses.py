"""Attack losses as pure functions of logits.

Every function maps ``logits`` float [B, K] (any K >= 2; 10 and 1000 both fine) and ``labels``
int [B] to a per-example value float32 [B] (float64 when the logits are float64). Logits in
lower precision (bf16/f16) are upcast to float32 before the loss is taken.

Two layers:

* plain losses in their textbook sign: :func:`cross_entropy`, :func:`margin` (the C&W "f6"
  margin, positive while the label still wins), :func:`dlr` (Croce & Hein 2020);
* :func:`objective` turns a loss name into the quantity an attack *maximises*, for the
  untargeted case (``labels`` = true classes) or the targeted one (``labels`` = targets).

The label column is removed with ``jnp.where(mask, -inf, logits)`` (never by multiplying with a
one-hot), so the "best other class" is right for negative logits too.
"""
from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
LOSSES = ("ce", "margin", "dlr")


def _upcast(logits):
    dt = jnp.promote_types(logits.dtype, jnp.float32)
    return logits.astype(dt)


def _label_mask(logits, labels):
    """bool [B, K]: True at each row's label column."""
    return jnp.arange(logits.shape[-1])[None, :] == labels[:, None]


def label_logit(logits, labels):
    """z_y: float [B]."""
    return jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def best_other_logit(logits, labels):
    """max_{j != y} z_j: float [B] (the label column is replaced by -inf, not zeroed)."""
    return jnp.max(jnp.where(_label_mask(logits, labels), -jnp.inf, logits), axis=-1)


def best_other_class(logits, labels):
    """argmax_{j != y} z_j: int32 [B]."""
    return jnp.argmax(jnp.where(_label_mask(logits, labels), -jnp.inf, logits), axis=-1).astype(jnp.int32)


def cross_entropy(logits, labels):
    """Softmax cross-entropy per example, float [B] (>= 0), stable in float32 for its value and gradient.

    Written as ``softplus(logsumexp_{j != y}(z_j - z_y))``, which equals ``logsumexp(z) - z_y``.
    The textbook form has gradient ``p_y - 1`` at the label, which is exactly 0 in float32 once
    the softmax maximum rounds to 1 (confident models), leaving only the tiny terms of the other
    classes and a wrong input-gradient sign. Here the label's gradient is ``-sigmoid(s)`` with
    ``s = logsumexp_{j != y}(z_j - z_y)``: the sum of the other classes' probabilities, never
    rounded away against 1.
    """
    return jax.nn.softplus(logsumexp_margin(logits, labels))


def logsumexp_margin(logits, labels):
    """``s = logsumexp_{j != y}(z_j - z_y)``, float [B]: a smooth "best other minus label" margin.

    ``cross_entropy = softplus(s)``, so s is a strictly increasing function of the CE per example
    and ``grad CE = sigmoid(s) * grad s``: the same direction, without the factor sigmoid(s) =
    1 - p_y that underflows to 0 in float32 once the label's margin exceeds ~87 (and becomes
    subnormal, then 0, before that). ``grad_z s = q - e_y`` with q the softmax over the other
    classes, a vector of norm >= 1 for every margin. Attacks take their CE gradient from s.
    """
    z = _upcast(logits)
    rel = z - label_logit(z, labels)[:, None]
    return jax.nn.logsumexp(jnp.where(_label_mask(z, labels), -jnp.inf, rel), axis=-1)


def margin(logits, labels):
    """C&W f6 margin z_y - max_{j != y} z_j, float [B]; > 0 iff the label is the strict argmax.

    C&W's untargeted objective is ``max(margin(z, y), -kappa)`` (minimised) and the targeted one
    ``max(-margin(z, t), -kappa)``.
    """
    z = _upcast(logits)
    return label_logit(z, labels) - best_other_logit(z, labels)


def _sorted_top(z, k):
    """The k largest logits, descending, float [B, k]; repeats the smallest when K < k."""
    kk = min(k, z.shape[-1])
    top = jax.lax.top_k(z, kk)[0]
    if kk < k:
        top = jnp.concatenate([top, jnp.repeat(top[:, -1:], k - kk, axis=-1)], axis=-1)
    return top


def dlr(logits, labels):
    """Difference-of-logits-ratio loss (Croce & Hein 2020), untargeted, float [B].

    DLR = -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12), pi = logits sorted descending.
    Positive iff misclassified; invariant to shifting and scaling the logits.
    """
    z = _upcast(logits)
    top = _sorted_top(z, 3)
    return -margin(z, labels) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits, targets):
    """Targeted DLR, float [B], to be maximised: (z_t - max_{j != t} z_j) / (z_pi1 - (z_pi3 + z_pi4)/2 + 1e-12).

    Croce & Hein's targeted form uses the true class in the numerator; an attack that only sees
    the target uses the strongest non-target class instead (equal whenever the true class leads).
    """
    z = _upcast(logits)
    top = _sorted_top(z, 4)
    return margin(z, targets) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def dlr_targeted_label(logits, labels, targets):
    """Croce & Hein's targeted DLR with the true class, float [B], to be maximised:
    (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4)/2 + 1e-12) (the loss of APGD-T; > 0 iff z_t > z_y)."""
    z = _upcast(logits)
    top = _sorted_top(z, 4)
    return (label_logit(z, targets) - label_logit(z, labels)) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def objective(loss: Union[str, LossFn], targeted: bool = False) -> LossFn:
    """The per-example quantity an attack maximises: fn(logits [B,K], labels [B]) -> float [B].

    untargeted (labels = true classes): ce -> CE(z, y); margin -> max_{j!=y} z_j - z_y;
    dlr -> DLR(z, y). targeted (labels = targets): ce -> -CE(z, t); margin -> z_t - max_{j!=t} z_j;
    dlr -> targeted DLR. A callable is used as given (it must already be "higher = stronger").
    """
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; choose one of {list(LOSSES)} or pass a callable")
    if loss == "ce":
        return (lambda z, t: -cross_entropy(z, t)) if targeted else cross_entropy
    if loss == "margin":
        return margin if targeted else (lambda z, y: -margin(z, y))
    return dlr_targeted if targeted else dlr


def gradient_objective(loss: Union[str, LossFn], targeted: bool = False) -> LossFn:
    """The function attacks differentiate: a per-example strictly increasing transform of
    ``objective(loss, targeted)`` whose input gradient has the same direction and no softmax
    saturation in float32.

    ce -> ``logsumexp_margin`` (untargeted) / ``-logsumexp_margin(z, t)`` (targeted), since
    CE = softplus(logsumexp_margin) and softplus is increasing; margin and dlr (no softmax) and
    callables are returned unchanged. Every attack here normalises its gradient per example (sign,
    L1 or L2), so a per-example positive rescaling of the gradient leaves the attack unchanged in
    exact arithmetic and keeps it exact in float32 for confident models (the true CE gradient of
    an example whose label margin is above ~87 is exactly 0 in float32, and an L2- or L1-normalised
    gradient with a tiny norm hits the 1e-12 floor well before that). Values (best-iterate
    tracking, reported losses) always come from :func:`objective`.
    """
    if callable(loss) or loss != "ce":
        return objective(loss, targeted)
    return (lambda z, t: -logsumexp_margin(z, t)) if targeted else logsumexp_margin


def is_adversarial(logits, labels, targeted: bool = False, confidence: float = 0.0):
    """bool [B]: untargeted, max_{j!=y} z_j > z_y + confidence; targeted, z_t > max_{j!=t} z_j + confidence.

    With confidence 0 this is "argmax != y" (resp. "argmax == t") up to exact ties.
    """
    m = margin(logits, labels)
    return (m > confidence) if targeted else (m < -confidence)
