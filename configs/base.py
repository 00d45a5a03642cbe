"""The one config schema: every key the code reads, with its dataset-independent default.

Dataset configs derive from it and override only what differs (``configs/mnist.py``, the embedded
default, and ``configs/imagenet.py``; ``configs/mnist_tiny.py`` derives from mnist). The keys whose
value depends on the data (:data:`DATASET_KEYS`: names and image geometry, every budget in pixel
units, the architectures sized for the images, the tuned step counts) are typed placeholders
(``None``) here, which every dataset config sets. The maps of :data:`OPEN_MAPS` are keyed by attack or
defense name, so a dataset config may add entries to them. ``tests/test_configs.py`` checks that
every config has exactly this key tree and sets every dataset key. Library code reads keys as
attributes (``config.train.num_steps``) and never restates a default.
"""
import ml_collections
from ml_collections import config_dict

DATASET_KEYS = (
    "workdir", "dataset", "validation_size", "image_size", "channels", "num_classes", "classifier",
    "classifiers", "ipgan.gen_width", "ipgan.discriminator", "ipgan.disc_width", "ipgan.eps_inv",
    "ipgan_adaptive.attack.eps", "ipgan_adaptive.attack.step_size", "uipd.eps", "grip_gan.input_noise",
    "train_attacks", "train.num_steps", "eval.transfer_source", "eval.transfer_source_fallback",
    "eval.checks.large_eps", "eval.eps_curve")
OPEN_MAPS = ("eval.attack_params", "eval.whitebox_per_defense")


def get_config():
    """The schema with its defaults; the keys of :data:`DATASET_KEYS` are left to the dataset configs."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.workdir = config_dict.placeholder(str)
    c.stage = "all"               # all | classifier | defense
    c.distributed = False         # call jax.distributed.initialize() (multi-host)
    c.allow_other_classifier = False  # resume/evaluate a defense trained against other classifier params
    c.dataset = config_dict.placeholder(str)
    c.data_dir = config_dict.placeholder(str)    # TFDS data_dir (default ~/.cache/ipgan_jax/tfds)
    c.manual_dir = config_dict.placeholder(str)  # TFDS manual_dir (ImageNet tars)
    # the end of the train split: monitoring / model selection, never trained on; 0: no validation split
    c.validation_size = config_dict.placeholder(int)
    c.image_size = config_dict.placeholder(int)
    c.channels = config_dict.placeholder(int)
    c.num_classes = config_dict.placeholder(int)
    c.classifier = config_dict.placeholder(str)     # the target f
    c.classifiers = config_dict.placeholder(tuple)  # columns of the evaluation table
    c.classifier_ckpt = config_dict.placeholder(str)  # ported ImageNet f (<workdir>/classifiers/<name>/pretrained)
    # Shipped models (pretrained/<dataset>/, ipgan_jax/pretrained): True loads every classifier and defense
    # from there, never from workdir; continue_pretrained=True starts a training run that has no checkpoint
    # from the shipped train state (e.g. continue an adaptive generator for more steps on another machine).
    c.pretrained = False
    c.pretrained_dir = config_dict.placeholder(str)   # default: <repo>/pretrained/<dataset>
    c.continue_pretrained = False

    # Target classifier training (MNIST; ImageNet classifiers are ported, never trained here).
    c.classifier_train = ml_collections.ConfigDict(dict(
        batch_size=128, eval_batch_size=1000, num_epochs=5.0, num_steps=0,  # num_steps > 0 overrides epochs
        learning_rate=2e-3, warmup_steps=200, weight_decay=1e-4,
        log_every=100, checkpoint_every=500, keep=2, num_train_examples=config_dict.placeholder(int)))

    # The defense trained by run_train.py (ipgan; baselines: see ipgan_jax/defenses). Each defense's
    # section has num_steps: > 0 overrides train.num_steps for that defense (0: train.num_steps).
    c.defense = "ipgan"
    c.ipgan = ml_collections.ConfigDict(dict(
        generator="unet", gen_width=config_dict.placeholder(int),
        discriminator=config_dict.placeholder(str),   # dcgan | patchgan
        disc_width=config_dict.placeholder(int),
        eps_inv=config_dict.placeholder(float),       # bound of the inverse perturbation (pixel units)
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
        num_steps=0,
    ))
    # Adaptive IP-GAN (beyond the paper; ipgan_jax/defenses/ipgan_adaptive.py): a `fraction` of the
    # attacked rows of each batch is crafted by `attack` through the current pipeline f(d(.));
    # TRADES KL weight l_kl on those rows; the monitor runs `monitor_attack`-`monitor_steps` through the pipeline
    # with exact and straight-through gradients. Any config.ipgan field can be overridden here.
    c.ipgan_adaptive = ml_collections.ConfigDict(dict(
        num_steps=0, fraction=0.5, l_kl=0.0, monitor_steps=20,
        monitor_attack="pgd",        # "pgd" (step 2.5 eps / monitor_steps) | "apgd" (APGD-CE, no fixed step)
        attack=dict(name="pgd", eps=config_dict.placeholder(float), steps=7,
                    step_size=config_dict.placeholder(float), random_start=True),
        # curriculum: ((start_step, steps, step_size), ...): from start_step on, `attack` runs with these
        # steps / step_size, e.g. ((4000, 20, 0.0375),) for PGD-20 after 4000 steps of PGD-7; (): none
        attack_phases=()))
    # Baselines of Table 1 (--config.defense=<name>); ipgan_jax/defenses/<name>.py documents each.
    c.ape_gan = ml_collections.ConfigDict(dict(
        gen_width=64, disc_width=64, lr_g=2e-4, lr_d=2e-4, b1=0.5, b2=0.999,
        l_pix=0.7, l_adv=0.3, g_steps=2,              # two G updates per D update
        train_attacks=[],            # x_adv for training; []: the shared config.train_attacks
        clean_fraction=0.0, num_steps=0))
    c.defense_gan = ml_collections.ConfigDict(dict(
        latent_dim=128, gen_width=32, disc_width=32, gp_weight=10.0, critic_steps=5,
        lr=1e-4, b1=0.5, b2=0.9, num_steps=0,
        rec_steps=200, rec_restarts=10,    # z-search L, R of the paper
        rec_lr=10.0, rec_momentum=0.7,     # z-search SGD with momentum on the per-pixel MSE
        eval_steps=50, eval_restarts=2,    # > 0: used by defend() instead of rec_* (CPU budget)
        z_seed=0))
    c.dae = ml_collections.ConfigDict(dict(
        width=32, activation="relu", noise_std=0.1, adv_fraction=0.5, lr=1e-3, num_steps=0))
    c.uipd = ml_collections.ConfigDict(dict(
        eps=config_dict.placeholder(float), parametrization="project", lr=1e-2, num_steps=0))
    # GRIP-GAN: IP-GAN's nets/losses (+ any config.ipgan field overridden here), clean data only,
    # + uniform input noise (not an attack) and a logit-margin guidance term (0, 0: plain clean IP-GAN)
    c.grip_gan = ml_collections.ConfigDict(dict(
        num_steps=0, input_noise=config_dict.placeholder(float), l_margin=1.0, margin=10.0))
    # The mix of attacks that makes x_adv on the fly during training; one is drawn per step,
    # and each example's eps is drawn uniformly in [eps_min, eps] (pixel units).
    c.train_attacks = config_dict.placeholder(list)
    c.train = ml_collections.ConfigDict(dict(
        batch_size=64, num_steps=config_dict.placeholder(int), log_every=50, eval_every=250,
        eval_batch_size=256, checkpoint_every=250, keep=3, sample_every=500,
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
        # the test image the evaluation starts at: 5000 evaluates images 5000.. (a slice held out from model and
        # attack selection; every number is confirmed there once); runs on different slices never merge
        first_test_image=0,
        attacks="fgsm,pgd,bim,mifgsm,cw_l2,cw_hc,deepfool",   # cw_hc: C&W-L2 with kappa 20
        # oblivious / transfer blocks: per-attack overrides of the library defaults (cw_hc inherits cw_l2's)
        attack_params={},
        defenses="none,ipgan",
        # transfer block: attacks crafted on transfer_source; the classifier that is transfer_source
        # itself is attacked through transfer_source_fallback
        transfer_source=config_dict.placeholder(str), transfer_source_fallback=config_dict.placeholder(str),
        # white-box block (and curve, large-eps check): each suite member at eps (pgd's eps), restarts
        # x steps of 2.5 eps / steps, worst case per image; per-defense overrides of steps / restarts
        # and EOT draws (Defense-GAN: gradient averaged over 4 z0 draws)
        whitebox_suite="pgd_ce,pgd_margin", whitebox_steps=100, whitebox_restarts=2,
        square_queries=5000,       # Square's budget in the suite (apgd_* use whitebox_steps)
        success_margin=0.0,        # suite attacks count an iterate as a success only past this logit margin (>= 0)
        # views: the attack views every suite member runs under (docs/evaluation.md#white-box-suites), e.g.
        # --config.eval.whitebox_per_defense.ipgan_adaptive.views=exact,straight_through,hybrid,smooth
        whitebox_per_defense=dict(defense_gan=dict(eot_samples=4), binarize=dict(bpda=True),
                                  ipgan=dict(views="exact"), ipgan_adaptive=dict(views="exact")),
        whitebox_num_examples=0,   # > 0: only the first N examples in the costly blocks (whitebox, cw, curve, checks)
        whitebox_cross=True,       # judge every pipeline on the examples crafted through each other one
        cw=dict(binary_search_steps=9, steps=1000, lr=0.01, initial_const=0.01, abort_early=True),  # cw block
        # attack view 'surrogate': BPDA through a small smooth network fitted to imitate the defense (Adam, MSE) on
        # the first num_images training images, half of each batch with uniform noise in the eps box
        surrogate=dict(steps=1000, batch_size=64, width=32, lr=1e-3, num_images=4096),
        # budget block (ipgan_jax/eval/budget.py): the suite at each rung (restarts, iterations; each at least
        # double the one before) on the images still robust, until a rung moves the robust accuracy by < tolerance
        budget=dict(suite="apgd_ce,apgd_dlr", tolerance=0.005,
                    ladder=((1, 100), (2, 100), (2, 200), (2, 500), (5, 500), (5, 1000), (10, 1000)),
                    # the out_dir of an earlier budget run whose rungs begin this ladder: continue it (budget.py)
                    resume_from=config_dict.placeholder(str)),
        # min_eps block (ipgan_jax/eval/eps_search.py): per image the smallest eps of step, 2 step, ..., max_eps at
        # which the suite breaks f(d(.)), by bisection (the defense's white-box steps, restarts and views)
        min_eps=dict(suite="apgd_ce,apgd_dlr", step=0.01, max_eps=0.5),
        checks=dict(steps=(10, 100),            # PGD steps compared by the steps check
                    large_eps=config_dict.placeholder(tuple), max_large_eps_acc=0.05,
                    min_grad_ratio=0.01,         # median |grad| through d / without d
                    bpda_margin=0.05,            # BPDA may beat the exact gradient by at most this
                    tol=0.01,                    # steps / fgsm_vs_pgd / transfer / blackbox: max(tol, 2 / n)
                    names="all"),                # or a subset, e.g. "gradient,transfer_vs_whitebox" (cheap ones)
        eps_curve=config_dict.placeholder(tuple), out_dir=config_dict.placeholder(str),
        # folded into every attack key: 0 keeps the keys of earlier runs; another value gives the same suite fresh
        # random starts, so --merge of two runs with different nonces adds restarts instead of repeating them
        run_nonce=0))
    return c
