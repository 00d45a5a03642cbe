"""Convolutions with the values and gradients of ``lax.conv_general_dilated``, computed in forms
that XLA:CPU runs fast inside ``lax`` loops (attacks, z-search, PGD through a defense).

Inside a ``while`` loop XLA:CPU runs autodiff's own input-gradient convolution (kernel layout
'HWOI') and input-dilated convolutions through a slow generic path, 4-20x slower than the
canonical NHWC/HWIO convolution (jax#12868). Everything here is the same function with the same
parameters as the flax layer it replaces, so checkpoints are interchangeable:

* ``conv_s1(x, w, padding)``: stride-1 NHWC/HWIO convolution whose custom VJP writes d/dx as an
  explicit convolution with the flipped, transposed kernel;
* ``conv_general_dilated``: a drop-in for ``nn.Conv(..., conv_general_dilated=...)``: stride-1,
  undilated, ungrouped NHWC convolutions go through ``conv_s1``, anything else through lax;
* ``Conv`` / ``StridedConv`` / ``ConvTranspose``: 'SAME' layers with flax's parameters
  ('kernel' [k, k, C_in, F], 'bias' [F]); the strided ones use space-to-depth / sub-pixel forms.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_DN = ("NHWC", "HWIO", "NHWC")


def _conv_s1(x, w, padding):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_s1(x, w, padding):
    """Stride-1 NHWC/HWIO convolution, ``padding`` ((lo, hi), (lo, hi)), with the usual gradients.

    Values and gradients are exactly those of ``lax.conv_general_dilated``; only d/dx is
    rewritten as a convolution with the flipped kernel in the canonical HWIO layout.
    """
    return _conv_s1(x, w, padding)


def _conv_s1_fwd(x, w, padding):
    return _conv_s1(x, w, padding), (x, w)


def _conv_s1_bwd(padding, res, g):
    x, w = res
    kh, kw = w.shape[:2]
    (ph0, ph1), (pw0, pw1) = padding
    w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    # the output of the flipped conv may be longer than x when the forward conv dropped rows
    # (VALID with a remainder never happens at stride 1, but negative pads can): crop to x.
    dx = _conv_s1(g, w_t, ((kh - 1 - ph0, kh - 1 - ph1), (kw - 1 - pw0, kw - 1 - pw1)))
    dx = dx[:, :x.shape[1], :x.shape[2]]
    _, vjp_w = jax.vjp(lambda w_: _conv_s1(x, w_, padding), w)
    return dx, vjp_w(g)[0]


conv_s1.defvjp(_conv_s1_fwd, _conv_s1_bwd)


def _is_nhwc(dimension_numbers):
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, jax.lax.ConvDimensionNumbers):
        return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    return tuple(dimension_numbers) == _DN


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated`` with fast gradients for 2-D stride-1 NHWC/HWIO convolutions.

    Pass it to flax: ``nn.Conv(..., conv_general_dilated=fast_conv.conv_general_dilated)``.
    Other cases (strides, dilation, groups, other layouts or ranks) call lax unchanged.
    """
    ones = (1,) * (lhs.ndim - 2)
    simple = (lhs.ndim == 4 and tuple(window_strides) == ones
              and tuple(lhs_dilation or ones) == ones and tuple(rhs_dilation or ones) == ones
              and feature_group_count == 1 and batch_group_count == 1 and precision is None
              and preferred_element_type is None and _is_nhwc(dimension_numbers))
    if not simple:
        return jax.lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
            batch_group_count=batch_group_count, precision=precision,
            preferred_element_type=preferred_element_type)
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], ones, padding)
    return conv_s1(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in padding))


class Conv(nn.Module):
    """``nn.Conv(features, (k, k), padding='SAME')`` (stride 1, same params) over ``conv_s1``."""
    features: int
    kernel_size: int = 3
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        lo = (k - 1) // 2
        y = conv_s1(x, kernel, ((lo, k - 1 - lo), (lo, k - 1 - lo)))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class _StridedLayer(nn.Module):
    """Fields and parameters shared by StridedConv / ConvTranspose (flax's names and inits)."""
    features: int
    kernel_size: int = 3
    strides: int = 2
    use_bias: bool = True

    def _kernel(self, cin):
        k = self.kernel_size
        return self.param("kernel", nn.initializers.lecun_normal(), (k, k, cin, self.features))

    def _sizes(self, x):
        """((kernel size, stride, features), x.shape, the kernel param) for input x [B, H, W, C]."""
        return (self.kernel_size, self.strides, self.features), x.shape, self._kernel(x.shape[-1])

    def _bias(self, y):
        return y + self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else y


class StridedConv(_StridedLayer):
    """``nn.Conv(features, (k, k), strides=s, padding='SAME')`` (same params), computed fast.

    Evaluated as a stride-1 ``conv_s1`` on the space-to-depth (s x s blocks -> channels) input
    with the correspondingly rearranged kernel: the same function, but its gradients avoid the
    input-dilated / window-dilated convolutions that XLA:CPU can run 5-20x slower (e.g. 5x5 s2
    with odd sizes, 7 -> 4, as in the WGAN-GP critic). It wastes some MACs (zero taps), so
    plain ``nn.Conv`` is used where XLA:CPU's own strided gradients are fast (APE-GAN's nets).
    """
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x):
        (k, s, f), (b, h, w, cin), kernel = self._sizes(x)
        ho, wo = -(-h // s), -(-w // s)
        p_lo = max((ho - 1) * s + k - h, 0) // 2                    # lax 'SAME' (same in H and W
        p_lo_w = max((wo - 1) * s + k - w, 0) // 2                  # for square inputs)
        # output m reads input s*m + j - p_lo = s*(m + q) + r through tap j = s*q + r + p_lo
        xs = jnp.pad(x, ((0, 0), (0, ho * s - h), (0, wo * s - w), (0, 0)))
        xs = xs.reshape(b, ho, s, wo, s, cin).transpose(0, 1, 3, 2, 4, 5).reshape(b, ho, wo, s * s * cin)

        def taps(lo):
            qs = [q for r in range(s) for q in range(-k, k + 1) if 0 <= s * q + r + lo < k]
            q_lo, q_hi = min(min(qs), 0), max(max(qs), 0)
            qq = np.arange(q_lo, q_hi + 1)
            idx = s * qq[:, None] + np.arange(s)[None, :] + lo          # [Q, s]
            return np.where((idx >= 0) & (idx < k), idx, k), (-q_lo, q_hi)

        iy, pad_y = taps(p_lo)
        ix, pad_x = taps(p_lo_w)
        kp = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
        wt = kp[iy[:, :, None, None], ix[None, None, :, :]]             # [Qy, s, Qx, s, C_in, F]
        wt = wt.transpose(0, 2, 1, 3, 4, 5).reshape(iy.shape[0], ix.shape[0], s * s * cin, f)
        return self._bias(conv_s1(xs, wt, (pad_y, pad_x)))


class ConvTranspose(_StridedLayer):
    """``nn.ConvTranspose(features, (k, k), strides=(s, s), padding='SAME')``, computed fast.

    Same parameters ('kernel' [k, k, C_in, F], 'bias' [F], same init) and the same function as
    flax's ConvTranspose with 'SAME' padding, but evaluated as a stride-1 convolution that yields
    the s*s output phases as channels, then a depth-to-space shuffle (sub-pixel form). XLA:CPU
    runs lax.conv_transpose (an input-dilated conv) ~10x slower than this.
    """
    kernel_size: int = 4

    @nn.compact
    def __call__(self, x):
        (k, s, f), (b, h, w, cin), kernel = self._sizes(x)
        # lax.conv_transpose 'SAME': output o = s*i - j + a for input i, kernel tap j.
        a = k - 1 if s > k - 1 else -(-(k + s - 2) // 2)
        # output s*m + p reads input m + d through tap j = s*d - p + a (when 0 <= j < k)
        ds = [d for p in range(s) for d in range(-k, k + 1) if 0 <= s * d - p + a < k]
        d_lo, d_hi = min(min(ds), 0), max(max(ds), 0)
        taps = np.arange(d_lo, d_hi + 1)
        idx = s * taps[:, None] - np.arange(s)[None, :] + a          # [T, s] kernel tap or invalid
        idx = np.where((idx >= 0) & (idx < k), idx, k)                # k -> the zero row below
        kp = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
        wt = kp[idx[:, :, None, None], idx[None, None, :, :]]        # [T, s, T, s, C_in, F]
        t = len(taps)
        wt = wt.transpose(0, 2, 4, 1, 3, 5).reshape(t, t, cin, s * s * f)
        y = conv_s1(x, wt, ((-d_lo, d_hi), (-d_lo, d_hi)))
        return self._bias(y.reshape(b, h, w, s, s, f).transpose(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, f))
