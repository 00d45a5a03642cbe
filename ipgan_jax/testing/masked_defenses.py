"""Mock defenses that mask gradients in different ways, and the sanity check expected to flag each.

Every mock maps x float [B, H, W, C] in [0, 1] to the same shape in [0, 1] and keeps a tiny
LeNet's clean accuracy roughly as is; what differs is the gradient an attacker gets.
"""
import jax
import jax.numpy as jnp

from ipgan_jax.models.fusion import FUSION_VIEWS


def _hash_key(x):
    """A key from each batch's 8-bit content (pure: the same input gives the same noise)."""
    q = jnp.round(jnp.clip(jax.lax.stop_gradient(x), 0, 1) * 255).astype(jnp.uint32)
    h = jnp.sum(q.reshape(-1) * (jnp.arange(q.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + 1))
    return jax.random.fold_in(jax.random.PRNGKey(7), h)


def stop_gradient(x):
    """Identity forward, zero gradient."""
    return jax.lax.stop_gradient(x)


def round_8bit(x):
    """Quantise to 8 bits: piecewise constant, zero gradient almost everywhere."""
    return jnp.round(x * 255.0) / 255.0


def binarize(x):
    """Threshold at 0.5: zero gradient; robust to small Linf eps, not to eps >= 0.5."""
    return (x > 0.5).astype(x.dtype)


def steep_sigmoid(x):
    """A smooth binariser: sigmoid(1000 (x - 0.5)); its gradient underflows except near 0.5."""
    return jax.nn.sigmoid(1000.0 * (x - 0.5))


def saturated_clip(x):
    """A contrast stretch clip(20 (x - 0.5) + 0.5, 0, 1): zero gradient outside [0.475, 0.525]."""
    return jnp.clip(20.0 * (x - 0.5) + 0.5, 0.0, 1.0)


@jax.custom_vjp
def random_noise(x):
    """Identity forward; the backward pass returns random noise (keyed by the input) instead of the
    gradient whenever x is off the 8-bit grid -- i.e. everywhere except at clean test images. A
    single step from the clean image (FGSM) gets the true gradient, any randomly started or
    iterated attack gets noise: the shattered-gradient pattern of randomised defenses."""
    return x


def _rn_fwd(x):
    return x, x


def _rn_bwd(x, g):
    on_grid = jnp.all(jnp.abs(x * 255.0 - jnp.round(x * 255.0)) < 1e-3, axis=(1, 2, 3), keepdims=True)
    noise = jax.random.normal(_hash_key(x), g.shape, g.dtype) * (jnp.std(g) + 1e-12)
    return (jnp.where(on_grid, g, noise),)


random_noise.defvjp(_rn_fwd, _rn_bwd)


@jax.custom_vjp
def noisy_gradient(x):
    """Identity forward, random-noise gradient everywhere: white-box attacks are blind, attacks
    that transfer from f alone are not."""
    return x


def _ng_bwd(x, g):
    return (jax.random.normal(_hash_key(x), g.shape, g.dtype) * (jnp.std(g) + 1e-12),)


noisy_gradient.defvjp(lambda x: (x, x), _ng_bwd)


def half_masked(x):
    """Identity forward; zero gradient on every other image of the batch (rows 0, 2, 4, ...), the exact
    gradient on the rest: masking of part of the images, as a learned generator may do. Gradient attacks
    break only the unmasked half; a score-based attack breaks both."""
    masked = (jnp.arange(x.shape[0]) % 2 == 0).reshape(-1, 1, 1, 1)
    return jnp.where(masked, jax.lax.stop_gradient(x), x)


TRAP_PERIOD = 0.06      # pixel units: longer than PGD-100's step at eps 0.3 (0.0075), shorter than PGD-10's (0.075)


@jax.custom_vjp
def trapping_gradient(x):
    """Identity forward; the backward pass flips the gradient's sign on the pixels whose value lies in
    the third of each ``TRAP_PERIOD`` band where cos(2 pi x / TRAP_PERIOD) < -0.5. An attack with small
    steps walks into a flipped band and is pushed back to its edge, where it stays (a trap a few steps
    from its random start); one with steps longer than the band lands at a pseudo-random phase, right
    two times in three, and drifts to the adversary's side. More PGD steps at a smaller step size then
    attack *worse*: the sign of a deceptive loss landscape that the `steps` check is there to see. The
    identity's gradient (BPDA) is exact, so `bpda` flags it too."""
    return x


def _tg_bwd(x, g):
    flipped = jnp.cos(2.0 * jnp.pi * x / TRAP_PERIOD) < -0.5
    return (jnp.where(flipped, -g, g),)


trapping_gradient.defvjp(lambda x: (x, x), _tg_bwd)


LEARNED_BINARISER_SCALE = 50.0    # raw = scale * (x - 0.5): tanh and the clip saturate beyond |x - 0.5| ~ 0.05


def learned_binariser(x, view: str = "exact"):
    """IP-GAN's real fusion, clip(x + 0.5 tanh(raw)), with a 'generator' that learned to binarise:
    raw = 50 (x - 0.5). The output is ~{0, 1} and the exact gradient vanishes wherever tanh or the clip
    saturates (all but the pixels near 0.5), which is how a trained G could mask. ``view`` picks the
    fusion's backward pass (:data:`ipgan_jax.models.fusion.FUSION_VIEWS`), and ``learned_binariser.view(name)``
    offers them to the evaluator as the real IP-GAN pipelines do."""
    return FUSION_VIEWS[view](x, LEARNED_BINARISER_SCALE * (x - 0.5), 0.5)


learned_binariser.view = lambda name: (lambda x: learned_binariser(x, name))


# mock -> (function, the checks (eval.checks.CHECKS) that must flag it)
MASKED = {
    "stop_gradient": (stop_gradient, ("gradient", "bpda")),
    "round_8bit": (round_8bit, ("gradient",)),
    "binarize": (binarize, ("large_eps",)),
    "steep_sigmoid": (steep_sigmoid, ("large_eps",)),
    "saturated_clip": (saturated_clip, ("large_eps",)),
    "random_noise": (random_noise, ("fgsm_vs_pgd",)),
    "noisy_gradient": (noisy_gradient, ("transfer_vs_whitebox",)),
    "half_masked": (half_masked, ("blackbox_vs_whitebox",)),
    "trapping_gradient": (trapping_gradient, ("steps", "bpda")),
    "learned_binariser": (learned_binariser, ("bpda",)),
}
