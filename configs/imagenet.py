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

The schema and its dataset-independent defaults are in ``configs/base.py``; this file sets only what
ImageNet changes.
"""
from configs import base
from ipgan_jax.config_lists import parse_names
from ipgan_jax.models.imagenet import INPUT_SIZE


def get_config(arg: str = "resnet50"):
    parts = parse_names(arg or "resnet50")
    classifier = parts[0]
    if classifier not in INPUT_SIZE:
        raise ValueError(f"configs/imagenet.py:{arg}: classifier must be one of {sorted(INPUT_SIZE)}")
    demo, tiny = "demo" in parts, "tiny" in parts
    c = base.get_config()
    c.workdir = "workdir/imagenet" + ("_demo" if demo else "") + ("_tiny" if tiny else "")
    c.stage = "defense"           # ImageNet classifiers are ported, never trained here
    c.dataset = "imagenet_sample" if demo or tiny else "imagenet2012"
    c.validation_size = 0 if (demo or tiny) else 10000  # end of the train split; 0: no split (20-photo demo)
    c.image_size = INPUT_SIZE[classifier]
    c.channels = 3
    c.num_classes = 1000
    c.classifier = classifier
    c.classifiers = (classifier,) if (demo or tiny) else ("resnet50", "vgg19", "inception_v3")

    c.ipgan.update(gen_width=32, discriminator="patchgan", disc_width=64, eps_inv=32 / 255)
    # Not tuned on ImageNet (no result uses them): the MNIST budgets at the scale of the training attacks.
    c.ipgan_adaptive.attack.update(eps=16 / 255, step_size=4 / 255)
    c.uipd.eps = 16 / 255
    c.grip_gan.input_noise = 16 / 255
    c.train_attacks = [
        dict(name="fgsm", eps=16 / 255, eps_min=2 / 255),
        dict(name="pgd", eps=16 / 255, eps_min=2 / 255, steps=5, step_size=4 / 255, random_start=True),
        dict(name="mifgsm", eps=16 / 255, eps_min=2 / 255, steps=5, step_size=3.2 / 255),
    ]
    # Sensible for one 80 GB GPU at 224 (fp32); scale with the number of devices.
    c.train.update(num_steps=50000, log_every=100, eval_every=2000, eval_batch_size=64,
                   checkpoint_every=2000, sample_every=2000)
    c.eval.batch_size = 50
    c.eval.attack_params = dict(cw_l2=dict(binary_search_steps=5, steps=100, abort_early=True),
                                deepfool=dict(steps=20, candidates=10))
    c.eval.update(transfer_source="vgg19", transfer_source_fallback="resnet50",
                  eps_curve=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255))
    c.eval.checks.large_eps = (64 / 255, 1.0)
    c.eval.surrogate.num_images = 256   # the surrogate view holds its images in memory (256 x 224 x 224 x 3 floats)
    if demo:
        c.train.update(batch_size=4, num_steps=200, log_every=10, eval_every=100, eval_batch_size=20,
                       checkpoint_every=100, sample_every=100)
        c.ipgan.gen_width = 16
        # C&W and the eps curve through EfficientNet + a 224-px generator cost ~1 h on a 2-core CPU:
        # the demo runs the oblivious and white-box blocks and the sanity checks (~10 min).
        c.eval.update(num_examples=20, batch_size=20, attacks="fgsm,pgd,mifgsm", whitebox_steps=20,
                      whitebox_restarts=1, transfer_source=classifier, transfer_source_fallback=classifier,
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
                      eps_curve=(0.0, 16 / 255), transfer_source=classifier, transfer_source_fallback=classifier)
        c.eval.checks.update(steps=(1, 2))
    return c
