"""Embedded default: MNIST, three target classifiers, IP-GAN.

    python run_train.py --config configs/mnist.py --config.classifier=mcnn
    python run_eval.py  --config configs/mnist.py
Any field can be overridden on the command line (``--config.train.num_steps=500``). The schema and
its dataset-independent defaults are in ``configs/base.py``; this file sets only what MNIST changes.
"""
from configs import base


def get_config():
    c = base.get_config()
    c.workdir = "workdir/mnist"
    c.dataset = "mnist"
    c.validation_size = 5000      # last 5k train images: monitoring / model selection, never trained on
    c.image_size = 28
    c.channels = 1
    c.num_classes = 10
    c.classifier = "lenet"                      # target f: lenet | mcnn | alexnet
    c.classifiers = ("alexnet", "mcnn", "lenet")  # columns of the evaluation table

    c.ipgan.update(gen_width=16, discriminator="dcgan", disc_width=32, eps_inv=0.5)
    c.ipgan_adaptive.num_steps = 4000   # chosen on the validation monitor
    c.ipgan_adaptive.attack.update(eps=0.3, step_size=0.1)
    # Baselines of Table 1: the step counts fit ~3-6 min of a 2-core CPU at batch 64.
    c.ape_gan.update(num_steps=600, train_attacks=[dict(name="fgsm", eps=0.15)])   # eps 0.15 as the paper
    c.defense_gan.num_steps = 500
    c.dae.num_steps = 1000
    c.uipd.update(eps=0.3, num_steps=2000)
    c.grip_gan.update(num_steps=1000, input_noise=0.3)
    c.train_attacks = [
        dict(name="fgsm", eps=0.3, eps_min=0.05),
        dict(name="pgd", eps=0.3, eps_min=0.1, steps=5, step_size=0.1, random_start=True),
        dict(name="bim", eps=0.3, eps_min=0.1, steps=5, step_size=0.1),
        dict(name="mifgsm", eps=0.3, eps_min=0.1, steps=5, step_size=0.06),
    ]
    c.train.num_steps = 3000

    c.eval.attack_params = dict(cw_l2=dict(binary_search_steps=4, steps=100, lr=0.05, initial_const=0.01,
                                           abort_early=True))
    c.eval.update(transfer_source="mcnn", transfer_source_fallback="lenet",
                  eps_curve=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4))
    c.eval.checks.large_eps = (0.5, 1.0)
    return c
