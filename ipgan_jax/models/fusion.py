"""Fusing the inverse perturbation with the input, and the views an attacker differentiates.

``fuse`` is the defense. The other members of :data:`FUSION_VIEWS` have exactly ``fuse``'s forward value
and another backward pass for its two saturating steps, tanh and the [0, 1] clip (BPDA, Athalye et al. 2018),
so an attacker's gradient does not vanish where a generator learned to saturate them (mask gradients,
binarise); G's own layers keep their exact gradients in every view:

* ``exact``: the true gradient;
* ``straight_through``: tanh and clip differentiated as the identity;
* ``hybrid``: tanh's exact derivative where it is at least :data:`HYBRID_MIN_GRAD`, the identity where it is
  smaller (saturated); the clip as the identity outside [0, 1] (inside, its exact derivative is 1 anyway);
* ``smooth``: tanh exact; the clip differentiated as the smooth clip
  ``a - t softplus((a - 1) / t) + t softplus(-a / t)`` with temperature :data:`SMOOTH_TEMPERATURE`
  (derivative ``1 - sigmoid((a - 1) / t) - sigmoid(-a / t)``: near 1 inside, decaying over about t outside).
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


HYBRID_MIN_GRAD = 1e-3    # hybrid view: below this, tanh's derivative counts as saturated
SMOOTH_TEMPERATURE = 0.05  # smooth view: the clip's softplus temperature, in pixel units


@jax.custom_vjp
def _tanh_hybrid(a):
    return jnp.tanh(a)


def _tanh_hybrid_bwd(t, ct):
    d = 1.0 - t * t
    return (ct * jnp.where(d >= HYBRID_MIN_GRAD, d, 1.0),)


_tanh_hybrid.defvjp(lambda a: (jnp.tanh(a), jnp.tanh(a)), _tanh_hybrid_bwd)


@jax.custom_vjp
def _clip01_smooth(a):
    return jnp.clip(a, 0.0, 1.0)


def _clip01_smooth_bwd(a, ct):
    t = SMOOTH_TEMPERATURE
    return (ct * (1.0 - jax.nn.sigmoid((a - 1.0) / t) - jax.nn.sigmoid(-a / t)),)


_clip01_smooth.defvjp(lambda a: (jnp.clip(a, 0.0, 1.0), a), _clip01_smooth_bwd)


def fuse_hybrid(x_adv, g_raw, eps_inv):
    """``fuse``'s value; tanh's exact gradient unless saturated, the clip straight-through (module docstring)."""
    return _clip01_st(x_adv + eps_inv * _tanh_hybrid(g_raw))


def fuse_smooth(x_adv, g_raw, eps_inv):
    """``fuse``'s value; tanh exact, the clip differentiated as a softplus-smoothed clip (module docstring)."""
    return _clip01_smooth(x_adv + eps_inv * jnp.tanh(g_raw))


# view name -> fuse(x_adv, g_raw, eps_inv) with fuse's forward value and that view's backward pass
FUSION_VIEWS = {"exact": fuse, "straight_through": fuse_straight_through, "hybrid": fuse_hybrid,
                "smooth": fuse_smooth}
