r"""ImageNet: IP-GAN against ported ResNet-50 / VGG-19 / Inception-v3 (or EfficientNet-Lite0).

    python run_train.py --config configs/imagenet.py                       # resnet50 (default)
    python run_train.py --config configs/imagenet.py:vgg19
    python run_train.py --config configs/imagenet.py:efficientnet_lite0,demo  # offline smoke demo
    python run_eval.py  --config configs/imagenet.py:efficientnet_lite0,demo

The argument after ':' is ``<classifier>[,demo][,tiny]``. ``image_size`` follows the classifier
(224, or 299 for Inception-v3). Data: TFDS ``imagenet2012`` prepared from the official tars in
``--config.manual_dir`` (see README). Weights: convert the Keras weight file once with

    python -m ipgan_jax.models.imagenet.weights.port --model resnet50 --weights FILE \
        --out <workdir>/classifiers/resnet50/pretrained

(EfficientNet-Lite0's weights ship in a package and are converted automatically).

``demo``: no ImageNet on the machine: train and evaluate on the 20 labelled sample photos
(``imagenet_sample``). This is a smoke demo of the code path, NOT a result.
``tiny``: a few steps on CPU, for tests.
"""
import ml_collections
from ml_collections import config_dict

from ipgan_jax.models.imagenet import INPUT_SIZE


def get_config(arg: str = "resnet50"):
    parts = [p for p in (arg or "resnet50").split(",") if p]
    classifier = parts[0]
    if classifier not in INPUT_SIZE:
        raise ValueError(f"configs/imagenet.py:{arg}: classifier must be one of {sorted(INPUT_SIZE)}")
    demo, tiny = "demo" in parts, "tiny" in parts
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.workdir = "workdir/imagenet" + ("_demo" if demo else "") + ("_tiny" if tiny else "")
    c.stage = "defense"           # ImageNet classifiers are ported, never trained here
    c.distributed = False
    c.allow_other_classifier = False  # resume/evaluate a defense trained against other classifier params
    c.pretrained = False          # no ImageNet models ship with the repository (see configs/mnist.py)
    c.pretrained_dir = config_dict.placeholder(str)
    c.continue_pretrained = False
    c.dataset = "imagenet_sample" if demo or tiny else "imagenet2012"
    c.data_dir = config_dict.placeholder(str)
    c.manual_dir = config_dict.placeholder(str)
    c.validation_size = 0 if (demo or tiny) else 10000  # end of the train split; 0: no split (20-photo demo)
    c.image_size = INPUT_SIZE[classifier]
    c.channels = 3
    c.num_classes = 1000
    c.classifier = classifier
    c.classifiers = (classifier,) if (demo or tiny) else ("resnet50", "vgg19", "inception_v3")
    c.classifier_ckpt = config_dict.placeholder(str)  # default <workdir>/classifiers/<name>/pretrained

    c.defense = "ipgan"
    c.ipgan = ml_collections.ConfigDict(dict(
        generator="unet", gen_width=32, discriminator="patchgan", disc_width=64,
        eps_inv=32 / 255, l_pix=0.7, l_adv=0.3, l_cls=1.0, l_feat=1.0, feat_layer="penultimate",
        lr_g=2e-4, lr_d=2e-4, b1=0.5, b2=0.999, lr_decay_steps=(), lr_decay_factor=0.1,
        clean_fraction=0.25, attack_sources="target"))
    c.train_attacks = [
        dict(name="fgsm", eps=16 / 255, eps_min=2 / 255),
        dict(name="pgd", eps=16 / 255, eps_min=2 / 255, steps=5, step_size=4 / 255, random_start=True),
        dict(name="mifgsm", eps=16 / 255, eps_min=2 / 255, steps=5, step_size=3.2 / 255),
    ]
    # Sensible for one 80 GB GPU at 224 (fp32); scale with the number of devices.
    c.train = ml_collections.ConfigDict(dict(
        batch_size=64, num_steps=50000, log_every=100, eval_every=2000, eval_batch_size=64,
        checkpoint_every=2000, keep=3, sample_every=2000,
        monitor_sources="",   # other classifiers the validation monitor also attacks (transfer DSR)
        num_train_examples=config_dict.placeholder(int),  # None: the whole train split
        compute_dtype="float32"))  # float32 | bfloat16 (the defense train step; see configs/mnist.py)
    c.eval = ml_collections.ConfigDict(dict(
        blocks="oblivious,transfer,whitebox,cw,curve,checks",  # run_eval.py --blocks overrides
        num_examples=1000, batch_size=50, attacks="fgsm,pgd,bim,mifgsm,cw_l2,cw_hc,deepfool",
        attack_params=dict(cw_l2=dict(binary_search_steps=5, steps=100, abort_early=True),
                           deepfool=dict(steps=20, candidates=10)),
        defenses="none,ipgan", transfer_source="vgg19", transfer_source_for_mcnn="resnet50",
        whitebox_suite="pgd_ce,pgd_margin", whitebox_steps=100, whitebox_restarts=2,
        square_queries=5000,       # Square's budget in the suite (apgd_* use whitebox_steps)
        whitebox_per_defense=dict(defense_gan=dict(eot_samples=4)),
        whitebox_num_examples=0,   # > 0: only the first N examples in the costly blocks (whitebox, cw, curve, checks)
        whitebox_cross=True,       # judge every pipeline on the examples crafted through each other one
        cw=dict(binary_search_steps=9, steps=1000, lr=0.01, initial_const=0.01, abort_early=True),
        checks=dict(steps=(10, 100), large_eps=(64 / 255, 1.0), max_large_eps_acc=0.05, min_grad_ratio=0.01,
                    bpda_margin=0.05, tol=0.01, names="all"),   # see configs/mnist.py
        eps_curve=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255), out_dir=config_dict.placeholder(str),
        # folded into every attack key: 0 keeps the keys of earlier runs; another value gives the same suite fresh
        # random starts, so --merge of two runs with different nonces adds restarts instead of repeating them
        run_nonce=0))
    # the same name the MNIST config uses for the surrogate of M_CNN, so the evaluator code is shared
    if demo:
        c.train.update(batch_size=4, num_steps=200, log_every=10, eval_every=100, eval_batch_size=20,
                       checkpoint_every=100, sample_every=100)
        c.ipgan.gen_width = 16
        # C&W and the eps curve through EfficientNet + a 224-px generator cost ~1 h on a 2-core CPU:
        # the demo runs the oblivious and white-box blocks and the sanity checks (~10 min).
        c.eval.update(num_examples=20, batch_size=20, attacks="fgsm,pgd,mifgsm", whitebox_steps=20,
                      whitebox_restarts=1, transfer_source=classifier, transfer_source_for_mcnn=classifier,
                      blocks="oblivious,whitebox,checks")
        c.eval.checks.steps = (5, 20)
    if tiny:
        c.train.update(batch_size=8, num_steps=2, log_every=1, eval_every=2, eval_batch_size=8,
                       checkpoint_every=1, sample_every=2)
        c.ipgan.update(gen_width=4, disc_width=8)
        c.train_attacks = [dict(name="fgsm", eps=16 / 255, eps_min=2 / 255)]
        c.eval.update(num_examples=8, batch_size=8, attacks="fgsm", whitebox_steps=2, whitebox_restarts=1,
                      attack_params=dict(cw_l2=dict(binary_search_steps=1, steps=2)),
                      cw=dict(binary_search_steps=1, steps=2),
                      eps_curve=(0.0, 16 / 255), transfer_source=classifier, transfer_source_for_mcnn=classifier)
        c.eval.checks.update(steps=(1, 2))
    return c
