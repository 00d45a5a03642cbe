"""Tiny MNIST config for tests and smoke runs: a few steps of everything, on CPU, in seconds."""
from configs import mnist


def get_config():
    c = mnist.get_config()
    c.workdir = "workdir/mnist_tiny"
    c.classifier_train.update(num_steps=30, batch_size=64, eval_batch_size=500, warmup_steps=5,
                              log_every=10, checkpoint_every=10, num_train_examples=4096)
    c.ipgan.update(gen_width=8, disc_width=8)
    # baselines: small nets, train.num_steps (num_steps=0), cheap z-search
    c.ape_gan.update(gen_width=8, disc_width=8, num_steps=0)
    c.defense_gan.update(gen_width=8, disc_width=8, critic_steps=2, num_steps=0, eval_steps=5, eval_restarts=2)
    c.dae.update(width=8, num_steps=0)
    c.uipd.update(num_steps=0)
    c.grip_gan.update(num_steps=0)
    c.ipgan_adaptive.update(monitor_steps=3, num_steps=0)
    c.ipgan_adaptive.attack.update(steps=3, step_size=0.15)
    c.train_attacks = [dict(name="fgsm", eps=0.3, eps_min=0.1),
                       dict(name="pgd", eps=0.3, eps_min=0.1, steps=3, step_size=0.1, random_start=True)]
    c.train.update(batch_size=32, num_steps=6, log_every=2, eval_every=3, eval_batch_size=64,
                   checkpoint_every=3, sample_every=3, num_train_examples=1024)
    c.eval.update(num_examples=64, batch_size=32, attacks="fgsm,pgd",
                  attack_params=dict(cw_l2=dict(binary_search_steps=2, steps=10, abort_early=True)),
                  whitebox_steps=10, whitebox_restarts=1, eps_curve=(0.0, 0.15, 0.3))
    c.eval.cw.update(binary_search_steps=3, steps=20, lr=0.1)
    c.eval.surrogate.update(steps=300, width=8, lr=3e-3, num_images=1024)
    c.eval.checks.steps = (5, 20)
    c.eval.budget.ladder = ((1, 2), (1, 4), (2, 4), (2, 10))
    c.eval.min_eps.update(step=0.05, max_eps=0.4)
    return c
