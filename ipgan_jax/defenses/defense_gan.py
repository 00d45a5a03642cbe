"""Defense-GAN (Samangouei et al. 2018): project the input onto the range of a clean-data GAN.

Training: a WGAN-GP (Gulrajani et al. 2017) on clean images only -- latent z ~ N(0, I_128),
gradient-penalty weight 10, ``critic_steps`` = 5 critic updates per G update inside one
``train_step`` (an unrolled ``lax.scan``), Adam 1e-4 with betas (0.5, 0.9) for both nets. Each critic
step draws fresh z and interpolation weights but reuses the step's real batch (the original
draws a new real batch per critic step; here a train step is one loader batch). The target
classifier f plays no part in training.

Nets (Gulrajani's MNIST WGAN-GP, width ``gen_width`` / ``disc_width`` instead of 64):
G: dense -> 4x4x4w, ReLU, deconv 5x5 s2 -> 8x8x2w, ReLU, crop 7x7, deconv 5x5 s2 -> 14x14xw, ReLU,
deconv 5x5 s2 -> 28x28xC, sigmoid. Critic: conv 5x5 s2 w / 2w / 4w, LReLU(0.2), linear -> score.
No normalisation layers (none is allowed in a GP critic; G follows the WGAN-GP MNIST code), so
both are pure functions of (params, input).

Test time (``defend``): z-search -- for each input x, R random restarts z_0 ~ N(0, I), then L
steps of gradient descent with momentum on ``mean_pixels (G(z) - x)^2`` (the original: lr 10,
momentum 0.7, TF ``MomentumOptimizer`` semantics ``v = m*v + g; z -= lr*v``), all restarts of
the whole batch as one [R*B] batch inside a ``lax.fori_loop``; output ``G(z*)`` of the restart
with the lowest final error. L = ``rec_steps`` = 200, R = ``rec_restarts`` = 10 as the paper;
``eval_steps`` / ``eval_restarts`` (> 0) override them for ``defend`` (CPU budget; see
configs/mnist.py).

Randomness stays pure: example i's restarts start from ``fold_in(PRNGKey(z_seed), hash(x_i))``
where hash(x_i) is a fixed integer hash of x_i quantised to 8 bits -- the same input always gets
the same z_0, independently of its batch and its position in it.

White-box attacks: ``defend`` is BPDA (Athalye et al. 2018): a ``jax.custom_vjp`` whose forward
pass is the z-search + G(z*) and whose backward pass is the identity w.r.t. x (zero w.r.t. the
params), so ``jax.grad(lambda x: loss(f(defend(params, x))))`` exists and equals the gradient
of f at G(z*). ``defend_exact`` is the same forward pass without the custom gradient: z* is a
constant of x there (the search runs under ``stop_gradient``), so its gradient is zero -- the
obfuscated gradient BPDA exists to get around. z_0 is a hash of x, i.e. effectively random to an
attacker, so the white-box evaluation adds EOT: ``seed_field`` names the config field
(``defense_gan.z_seed``) that fixes the draws; the evaluator rebuilds the defense with z_seed + k,
k < ``eval.whitebox_per_defense.defense_gan.eot_samples``, and averages the BPDA gradient (of the
log-softmax, hence of the CE loss) over those draws (``ipgan_jax.eval.evaluate.eot_logits``).

z-search step size: lr 10 / momentum 0.7 (the original) works for this G: on a 500-step G and
200 MNIST test images the error falls monotonically with L (mean per-pixel MSE 0.0333 / 0.0292
/ 0.0260 / 0.0232 at (L, R) = (25, 4) / (50, 4) / (100, 4) / (200, 10)); lr 30 converges faster
at L = 50 (0.0246) and lr 3 slower (0.0363). We keep the original 10.

Cost (XLA:CPU, 2 shared cores, default widths): 0.25-0.45 ms per image x step x restart (G
forward + z-gradient), i.e. 25-45 s per 1000 images at the default eval setting
(L, R) = (50, 2) and 8-15 min at the paper's (200, 10); each BPDA white-box attack step pays
one full z-search forward.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ipgan_jax.defenses.base import DefenseTrainer
from ipgan_jax.models.fast_conv import ConvTranspose, StridedConv


class WGANGenerator(nn.Module):
    out_channels: int = 1
    width: int = 64
    image_size: int = 28

    @nn.compact
    def __call__(self, z):
        w = self.width
        h = nn.relu(nn.Dense(4 * 4 * 4 * w)(z)).reshape(z.shape[0], 4, 4, 4 * w)
        h = nn.relu(ConvTranspose(2 * w, 5, 2)(h))   # 8x8
        h = h[:, :7, :7]                                                                  # 7x7
        h = nn.relu(ConvTranspose(w, 5, 2)(h))       # 14x14
        h = ConvTranspose(self.out_channels, 5, 2)(h)  # 28x28
        if h.shape[1] != self.image_size:
            h = jax.image.resize(h, (h.shape[0], self.image_size, self.image_size, h.shape[-1]), "bilinear")
        return nn.sigmoid(h)


class WGANCritic(nn.Module):
    width: int = 64

    @nn.compact
    def __call__(self, x):
        h = x * 2.0 - 1.0
        for mult in (1, 2, 4):
            h = nn.leaky_relu(StridedConv(self.width * mult, 5, 2)(h), 0.2)
        return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]


def _hash_images(x):
    """uint32 [B]: a fixed hash of each image quantised to 8 bits (no gradient)."""
    q = jnp.round(jnp.clip(jax.lax.stop_gradient(x), 0.0, 1.0) * 255.0).astype(jnp.uint32)
    q = q.reshape(x.shape[0], -1)
    w = jax.random.bits(jax.random.PRNGKey(0x5EED), (q.shape[1],), jnp.uint32) | jnp.uint32(1)
    return jnp.sum(q * w[None, :] + jnp.arange(q.shape[1], dtype=jnp.uint32)[None, :], axis=1,
                   dtype=jnp.uint32)


class DefenseGANTrainer(DefenseTrainer):
    name = "defense_gan"
    seed_field = "z_seed"   # config.defense_gan field that fixes the z_0 draws (EOT redraws it)

    def __init__(self, config, target_module, target_variables):
        super().__init__(config, target_module, target_variables)
        cfg = self.cfg = config.defense_gan
        self.latent_dim = int(cfg.latent_dim)
        self.generator = WGANGenerator(config.channels, cfg.gen_width, config.image_size)
        self.critic = WGANCritic(cfg.disc_width)
        self.g_tx = optax.adam(cfg.lr, b1=cfg.b1, b2=cfg.b2)
        self.d_tx = optax.adam(cfg.lr, b1=cfg.b1, b2=cfg.b2)
        self._bpda = self._make_bpda()

    # -- the GAN -----------------------------------------------------------------------
    def generate(self, g_params, z):
        return self.generator.apply({"params": g_params}, z)

    def init_state(self, rng):
        kg, kd = jax.random.split(rng)
        g = self.generator.init(kg, jnp.zeros((1, self.latent_dim)))["params"]
        d = self.critic.init(kd, jnp.zeros((1, *self.image_shape)))["params"]
        return {"step": jnp.zeros((), jnp.int32), "g": g, "d": d,
                "g_opt": self.g_tx.init(g), "d_opt": self.d_tx.init(d)}

    def critic_loss(self, d, g, x, z, alpha):
        """WGAN-GP critic loss ``E D(G(z)) - E D(x) + gp * E (||grad D(x_hat)||_2 - 1)^2``."""
        fake = jax.lax.stop_gradient(self.generate(g, z))
        d_apply = lambda v: self.critic.apply({"params": d}, v)  # noqa: E731
        x_hat = alpha * x + (1.0 - alpha) * fake
        grads = jax.grad(lambda v: jnp.sum(d_apply(v)))(x_hat)   # per-example (no batch coupling)
        norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=(1, 2, 3)) + 1e-12)
        gp = jnp.mean(jnp.square(norms - 1.0))
        w_dist = jnp.mean(d_apply(x)) - jnp.mean(d_apply(fake))
        return -w_dist + self.cfg.gp_weight * gp, {"w_dist": w_dist, "gp": gp}

    def generator_loss(self, g, d, z):
        return -jnp.mean(self.critic.apply({"params": d}, self.generate(g, z)))

    def _noise(self, key, n):
        kz, ka = jax.random.split(key)
        return (jax.random.normal(kz, (n, self.latent_dim)),
                jax.random.uniform(ka, (n, 1, 1, 1)))

    def train_step(self, state, batch, rng):
        rng = jax.random.fold_in(rng, state["step"])
        x = batch["image"]
        n = x.shape[0]
        g = state["g"]

        def critic_step(carry, i):
            d, d_opt = carry
            z, alpha = self._noise(jax.random.fold_in(rng, i), n)
            (loss, aux), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(d, g, x, z, alpha)
            upd, d_opt = self.d_tx.update(grads, d_opt, d)
            return (optax.apply_updates(d, upd), d_opt), (loss, aux)

        # a scan, unrolled: XLA:CPU runs weight-gradient convs inside a while loop ~20x slower
        (d, d_opt), (d_losses, auxs) = jax.lax.scan(
            critic_step, (state["d"], state["d_opt"]), jnp.arange(int(self.cfg.critic_steps)), unroll=True)
        d_loss, aux = d_losses[-1], jax.tree.map(lambda a: a[-1], auxs)
        z, _ = self._noise(jax.random.fold_in(rng, 10_000), n)
        g_loss, g_grads = jax.value_and_grad(self.generator_loss)(g, d, z)
        g_upd, g_opt = self.g_tx.update(g_grads, state["g_opt"], g)
        g = optax.apply_updates(g, g_upd)
        metrics = {"g_loss": g_loss, "d_loss": d_loss, "w_dist": aux["w_dist"], "gp": aux["gp"]}
        return {"step": state["step"] + 1, "g": g, "d": d, "g_opt": g_opt, "d_opt": d_opt}, metrics

    # -- test time: z-search -----------------------------------------------------------
    def search_settings(self):
        """(L, R) used by ``defend``: eval_steps / eval_restarts when > 0, else rec_steps / rec_restarts."""
        cfg = self.cfg
        steps = int(cfg.eval_steps) or int(cfg.rec_steps)
        restarts = int(cfg.eval_restarts) or int(cfg.rec_restarts)
        return steps, restarts

    def initial_z(self, x, restarts: int, key=None):
        """z_0 [R, B, latent]: deterministic in (z_seed, x_i) unless ``key`` is given."""
        base = jax.random.PRNGKey(int(self.cfg.z_seed)) if key is None else key
        keys = jax.vmap(lambda h: jax.random.fold_in(base, h))(_hash_images(x))   # [B]

        def one(k):
            return jax.random.normal(k, (restarts, self.latent_dim))

        return jnp.swapaxes(jax.vmap(one)(keys), 0, 1)

    def z_search(self, g_params, x, *, steps: int, restarts: int, z0=None, key=None):
        """Minimise ``mean_pixels (G(z) - x)^2`` from R starts; returns dict(x_rec, z, loss, losses).

        ``z0`` [R, B, latent] (default ``initial_z``); ``loss`` [B] is the best restart's final
        error, ``losses`` [R, B] all of them. No gradient flows to x.
        """
        cfg = self.cfg
        x = jax.lax.stop_gradient(x)
        g_params = jax.lax.stop_gradient(g_params)
        b = x.shape[0]
        if z0 is None:
            z0 = self.initial_z(x, restarts, key)
        r = z0.shape[0]
        xt = jnp.broadcast_to(x[None], (r, *x.shape)).reshape(r * b, *x.shape[1:])
        lr, mom = float(cfg.rec_lr), float(cfg.rec_momentum)

        def per_example(z):
            return jnp.mean(jnp.square(self.generate(g_params, z) - xt), axis=(1, 2, 3))

        grad_fn = jax.grad(lambda z: jnp.sum(per_example(z)))   # examples are independent

        def body(_, carry):
            z, v = carry
            v = mom * v + grad_fn(z)
            return z - lr * v, v

        z = z0.reshape(r * b, -1)
        z, _ = jax.lax.fori_loop(0, int(steps), body, (z, jnp.zeros_like(z)))
        x_all = self.generate(g_params, z)
        losses = jnp.mean(jnp.square(x_all - xt), axis=(1, 2, 3)).reshape(r, b)
        best = jnp.argmin(losses, axis=0)                                          # [B]
        pick = lambda a: a.reshape(r, b, *a.shape[1:])[best, jnp.arange(b)]       # noqa: E731
        return {"x_rec": pick(x_all), "z": pick(z), "loss": losses[best, jnp.arange(b)], "losses": losses}

    def defend_exact(self, params, x):
        steps, restarts = self.search_settings()
        return self.z_search(params, x, steps=steps, restarts=restarts)["x_rec"]

    def _make_bpda(self):
        @jax.custom_vjp
        def bpda(params, x):
            return self.defend_exact(params, x)

        def fwd(params, x):
            return self.defend_exact(params, x), params

        def bwd(params, g):
            return jax.tree.map(jnp.zeros_like, params), g

        bpda.defvjp(fwd, bwd)
        return bpda

    def defend(self, params, x):
        """x [B,H,W,C] in [0,1] -> G(z*) in [0,1]; BPDA gradient (identity) for attacks."""
        return self._bpda(params, x)

    def defense_params(self, state):
        return state["g"]

    def extra_sample_rows(self, params, x, x_adv):
        z, _ = self._noise(jax.random.PRNGKey(int(self.cfg.z_seed)), x.shape[0])
        return [("G(z) samples", jax.jit(self.generate)(params, z))]
