"""Fusing the inverse perturbation with the input.

``fuse`` is the defense. ``fuse_straight_through`` has the same forward value but differentiates
``tanh`` and ``clip`` as the identity (BPDA, Athalye et al. 2018): an attacker's gradient then
never vanishes where tanh or the [0, 1] clip saturate, which is how a generator that learned to
mask gradients (saturate, binarise) is caught.
"""
import jax
import jax.numpy as jnp


def inverse_perturbation(g_raw, eps_inv):
    """Bounded inverse perturbation ``eps_inv * tanh(g_raw)``, values in [-eps_inv, eps_inv]."""
    return eps_inv * jnp.tanh(g_raw)


def fuse(x_adv, g_raw, eps_inv):
    """``x_rec = clip(x_adv + eps_inv * tanh(g_raw), 0, 1)``; all [B, H, W, C], x_adv in [0, 1]."""
    return jnp.clip(x_adv + inverse_perturbation(g_raw, eps_inv), 0.0, 1.0)


@jax.custom_vjp
def _tanh_st(a):
    return jnp.tanh(a)


_tanh_st.defvjp(lambda a: (jnp.tanh(a), None), lambda _, ct: (ct,))


@jax.custom_vjp
def _clip01_st(a):
    return jnp.clip(a, 0.0, 1.0)


_clip01_st.defvjp(lambda a: (jnp.clip(a, 0.0, 1.0), None), lambda _, ct: (ct,))


def fuse_straight_through(x_adv, g_raw, eps_inv):
    """``fuse`` with a straight-through backward pass for tanh and the clip (the forward value is
    exactly ``fuse``'s); G's own layers keep their exact gradients."""
    return _clip01_st(x_adv + eps_inv * _tanh_st(g_raw))
