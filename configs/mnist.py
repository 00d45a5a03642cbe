"""Embedded default: MNIST, three target classifiers, IP-GAN.

    python run_train.py --config configs/mnist.py --config.classifier=mcnn
    python run_eval.py  --config configs/mnist.py
Any field can be overridden on the command line (``--config.train.num_steps=500``).
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.workdir = "workdir/mnist"
    c.stage = "all"               # all | classifier | defense
    c.distributed = False         # call jax.distributed.initialize() (multi-host)
    c.allow_other_classifier = False  # resume/evaluate a defense trained against other classifier params
    c.dataset = "mnist"
    c.data_dir = config_dict.placeholder(str)    # TFDS data_dir (default ~/.cache/ipgan_jax/tfds)
    c.manual_dir = config_dict.placeholder(str)  # TFDS manual_dir (ImageNet tars)
    c.validation_size = 5000      # last 5k train images: monitoring / model selection, never trained on
    c.image_size = 28
    c.channels = 1
    c.num_classes = 10
    c.classifier = "lenet"                      # target f: lenet | mcnn | alexnet
    c.classifiers = ("alexnet", "mcnn", "lenet")  # columns of the evaluation table
    c.classifier_ckpt = config_dict.placeholder(str)
    # Shipped models (pretrained/<dataset>/, ipgan_jax/pretrained): True loads every classifier and defense
    # from there, never from workdir; continue_pretrained=True starts a training run that has no checkpoint
    # from the shipped train state (e.g. continue an adaptive generator for more steps on another machine).
    c.pretrained = False
    c.pretrained_dir = config_dict.placeholder(str)   # default: <repo>/pretrained/<dataset>
    c.continue_pretrained = False

    # Target classifier training (MNIST only; ImageNet classifiers are ported).
    c.classifier_train = ml_collections.ConfigDict(dict(
        batch_size=128, eval_batch_size=1000, num_epochs=5.0, num_steps=0,  # num_steps > 0 overrides epochs
        learning_rate=2e-3, warmup_steps=200, weight_decay=1e-4,
        log_every=100, checkpoint_every=500, keep=2, num_train_examples=config_dict.placeholder(int)))

    # The defense trained by run_train.py (ipgan; baselines: see ipgan_jax/defenses).
    c.defense = "ipgan"
    c.ipgan = ml_collections.ConfigDict(dict(
        generator="unet", gen_width=16, discriminator="dcgan", disc_width=32,
        eps_inv=0.5,                 # bound of the inverse perturbation (pixel units)
        l_pix=0.7, l_adv=0.3, l_cls=1.0, l_feat=1.0,
        feat_layer="penultimate",    # phi in the feature loss: penultimate | logits
        lr_g=2e-4, lr_d=2e-4, b1=0.5, b2=0.999,
        lr_decay_steps=(), lr_decay_factor=0.1,  # both lrs x factor at each of these steps
        clean_fraction=0.25,         # share of each batch passed through G without attack
        # models the training attacks are crafted on, one drawn per step: 'target' (f; the paper)
        # and/or other trained classifiers, e.g. "target,lenet_s1,alexnet_s1" (<arch>_<tag> names
        # train an independent copy of <arch> on first use)
        attack_sources="target",
        adaptive=False,              # True: train ipgan_adaptive (config.ipgan_adaptive) instead
    ))
    # Adaptive IP-GAN (beyond the paper; ipgan_jax/defenses/ipgan_adaptive.py): a `fraction` of the
    # attacked rows of each batch is crafted by `attack` through the current pipeline f(d(.));
    # TRADES KL weight l_kl on those rows; the monitor runs `monitor_attack`-`monitor_steps` through the pipeline
    # with exact and straight-through gradients. Any config.ipgan field can be overridden here.
    c.ipgan_adaptive = ml_collections.ConfigDict(dict(
        num_steps=4000, fraction=0.5, l_kl=0.0, monitor_steps=20,   # 4000: chosen on the validation monitor
        monitor_attack="pgd",        # "pgd" (step 2.5 eps / monitor_steps) | "apgd" (APGD-CE, no fixed step)
        attack=dict(name="pgd", eps=0.3, steps=7, step_size=0.1, random_start=True),
        # curriculum: ((start_step, steps, step_size), ...): from start_step on, `attack` runs with these
        # steps / step_size, e.g. ((4000, 20, 0.0375),) for PGD-20 after 4000 steps of PGD-7; (): none
        attack_phases=()))
    # Baselines of Table 1 (--config.defense=<name>); ipgan_jax/defenses/<name>.py documents each.
    # num_steps > 0 overrides train.num_steps for that defense (0: use train.num_steps); the
    # defaults fit ~3-6 min of a 2-core CPU at batch 64.
    c.ape_gan = ml_collections.ConfigDict(dict(
        gen_width=64, disc_width=64, lr_g=2e-4, lr_d=2e-4, b1=0.5, b2=0.999,
        l_pix=0.7, l_adv=0.3, g_steps=2,              # two G updates per D update
        train_attacks=[dict(name="fgsm", eps=0.15)],   # x_adv for training (eps 0.15 as the paper)
        clean_fraction=0.0, num_steps=600))
    c.defense_gan = ml_collections.ConfigDict(dict(
        latent_dim=128, gen_width=32, disc_width=32, gp_weight=10.0, critic_steps=5,
        lr=1e-4, b1=0.5, b2=0.9, num_steps=500,
        rec_steps=200, rec_restarts=10,    # z-search L, R of the paper
        rec_lr=10.0, rec_momentum=0.7,     # z-search SGD with momentum on the per-pixel MSE
        eval_steps=50, eval_restarts=2,    # > 0: used by defend() instead of rec_* (CPU budget)
        z_seed=0))
    c.dae = ml_collections.ConfigDict(dict(
        width=32, activation="relu", noise_std=0.1, adv_fraction=0.5, lr=1e-3, num_steps=1000))
    c.uipd = ml_collections.ConfigDict(dict(
        eps=0.3, parametrization="project", lr=1e-2, num_steps=2000))
    # GRIP-GAN: IP-GAN's nets/losses (+ any config.ipgan field overridden here), clean data only,
    # + uniform input noise (not an attack) and a logit-margin guidance term (0, 0: plain clean IP-GAN)
    c.grip_gan = ml_collections.ConfigDict(dict(num_steps=1000, input_noise=0.3, l_margin=1.0, margin=10.0))
    # The mix of attacks that makes x_adv on the fly during training; one is drawn per step,
    # and each example's eps is drawn uniformly in [eps_min, eps] (pixel units).
    c.train_attacks = [
        dict(name="fgsm", eps=0.3, eps_min=0.05),
        dict(name="pgd", eps=0.3, eps_min=0.1, steps=5, step_size=0.1, random_start=True),
        dict(name="bim", eps=0.3, eps_min=0.1, steps=5, step_size=0.1),
        dict(name="mifgsm", eps=0.3, eps_min=0.1, steps=5, step_size=0.06),
    ]
    c.train = ml_collections.ConfigDict(dict(
        batch_size=64, num_steps=3000, log_every=50, eval_every=250, eval_batch_size=256,
        checkpoint_every=250, keep=3, sample_every=500,
        # other trained classifiers the validation monitor also crafts each training attack on
        # (transfer DSR, e.g. "mcnn": a validation estimate of Table 1's setting 2); "" none
        monitor_sources="",
        num_train_examples=config_dict.placeholder(int),  # None: the whole train split
        # float32 | bfloat16: the defense train step's frozen f, and IP-GAN / GRIP-GAN's G and D
        # (params, optimizer state, norm statistics and losses stay float32; evaluation: float32)
        compute_dtype="float32"))

    # Evaluation (run_eval.py).
    c.eval = ml_collections.ConfigDict(dict(
        blocks="oblivious,transfer,whitebox,cw,curve,checks",  # run_eval.py --blocks overrides
        num_examples=1000, batch_size=250,   # the first num_examples *test* images (evaluation only)
        attacks="fgsm,pgd,bim,mifgsm,cw_l2,cw_hc,deepfool",   # cw_hc: C&W-L2 with kappa 20
        # oblivious / transfer blocks: per-attack overrides of the library defaults (cw_hc inherits cw_l2's)
        attack_params=dict(cw_l2=dict(binary_search_steps=4, steps=100, lr=0.05, initial_const=0.01,
                                      abort_early=True)),
        defenses="none,ipgan", transfer_source="mcnn", transfer_source_for_mcnn="lenet",
        # white-box block (and curve, large-eps check): each suite member at eps (pgd's eps), restarts
        # x steps of 2.5 eps / steps, worst case per image; per-defense overrides of steps / restarts
        # and EOT draws (Defense-GAN: gradient averaged over 4 z0 draws)
        whitebox_suite="pgd_ce,pgd_margin", whitebox_steps=100, whitebox_restarts=2,
        square_queries=5000,       # Square's budget in the suite (apgd_* use whitebox_steps)
        # views: the attack views every suite member runs under (docs/evaluation.md#white-box-suites), e.g.
        # --config.eval.whitebox_per_defense.ipgan_adaptive.views=exact,straight_through,hybrid,smooth
        whitebox_per_defense=dict(defense_gan=dict(eot_samples=4), binarize=dict(bpda=True),
                                  ipgan=dict(views="exact"), ipgan_adaptive=dict(views="exact")),
        whitebox_num_examples=0,   # > 0: only the first N examples in the costly blocks (whitebox, cw, curve, checks)
        whitebox_cross=True,       # judge every pipeline on the examples crafted through each other one
        cw=dict(binary_search_steps=9, steps=1000, lr=0.01, initial_const=0.01, abort_early=True),  # cw block
        checks=dict(steps=(10, 100),            # PGD steps compared by the steps check
                    large_eps=(0.5, 1.0), max_large_eps_acc=0.05,
                    min_grad_ratio=0.01,         # median |grad| through d / without d
                    bpda_margin=0.05,            # BPDA may beat the exact gradient by at most this
                    tol=0.01,                    # steps / fgsm_vs_pgd / transfer / blackbox: max(tol, 2 / n)
                    names="all"),                # or a subset, e.g. "gradient,transfer_vs_whitebox" (cheap ones)
        eps_curve=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4), out_dir=config_dict.placeholder(str),
        # folded into every attack key: 0 keeps the keys of earlier runs; another value gives the same suite fresh
        # random starts, so --merge of two runs with different nonces adds restarts instead of repeating them
        run_nonce=0))
    return c
