"""Fusing the inverse perturbation with the input."""
import jax.numpy as jnp


def inverse_perturbation(g_raw, eps_inv):
    """Bounded inverse perturbation ``eps_inv * tanh(g_raw)``, values in [-eps_inv, eps_inv]."""
    return eps_inv * jnp.tanh(g_raw)


def fuse(x_adv, g_raw, eps_inv):
    """``x_rec = clip(x_adv + eps_inv * tanh(g_raw), 0, 1)``; all [B, H, W, C], x_adv in [0, 1]."""
    return jnp.clip(x_adv + inverse_perturbation(g_raw, eps_inv), 0.0, 1.0)
