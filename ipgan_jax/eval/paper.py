"""The paper's Table 1 and the display names of its methods and classifiers (constants; no JAX).

Table 1 of IP-GAN (Acta Electronica Sinica 2023) gives the Defense Success Rate (DSR, %) of six defenses on six
classifiers in two attack settings whose labels are lost; setting 1 is compared with our oblivious block and
setting 2 with our transfer block (the most likely reading; ``../shared/spec/ip-gan.md``).
"""
from __future__ import annotations

DEFENSE_NAMES = {"none": "No defense", "defense_gan": "Defense-GAN", "ape_gan": "APE-GAN", "dae": "DAE",
                 "uipd": "UIPD", "grip_gan": "GRIP-GAN", "ipgan": "IP-GAN", "ipgan_adaptive": "IP-GAN (adaptive)",
                 "binarize": "Binarisation (x > 0.5)"}
CLASSIFIER_NAMES = {"alexnet": "AlexNet", "mcnn": "M_CNN", "lenet": "LeNet", "resnet50": "ResNet-50",
                    "vgg19": "VGG-19", "inception_v3": "Inc-V3", "efficientnet_lite0": "EffNet-Lite0"}
_COLS = ("AlexNet", "M_CNN", "LeNet", "ResNet-50", "VGG-19", "Inc-V3")
_ROWS = {
    1: {"Defense-GAN": (72.40, 70.31, 68.26, 40.87, 51.04, 38.01),
        "APE-GAN": (83.40, 82.36, 80.71, 54.10, 57.88, 51.80),
        "DAE": (84.54, 85.68, 85.25, 65.94, 59.31, 64.54),
        "UIPD": (88.92, 87.45, 86.89, None, 59.91, None),
        "GRIP-GAN": (97.10, 98.25, 97.79, None, 86.35, 93.88),
        "IP-GAN": (97.83, 98.91, 98.04, 86.48, 87.23, 95.32)},
    2: {"Defense-GAN": (82.43, 86.13, 80.34, 42.08, 43.10, 41.96),
        "APE-GAN": (82.46, 85.14, 85.01, 73.90, 49.28, 70.90),
        "DAE": (83.66, 86.88, 84.17, 69.41, 51.61, 63.25),
        "UIPD": (87.92, 87.54, 85.22, None, 52.91, None),
        "GRIP-GAN": (89.34, 93.58, 92.69, None, 94.38, 86.73),
        "IP-GAN": (95.76, 94.77, 94.57, 97.99, 96.37, 90.25)},
}
# {setting: {defense display name: {classifier display name: DSR % or None}}}
PAPER_DSR = {blk: {m: dict(zip(_COLS, v)) for m, v in rows.items()} for blk, rows in _ROWS.items()}
BLOCK_TO_PAPER = {"oblivious": 1, "transfer": 2}


def paper_dsr(block: str, defense_name: str, classifier_name: str) -> float | None:
    """The paper's DSR (%) of a cell, by display names; None where the paper has none (or for other blocks)."""
    return PAPER_DSR.get(BLOCK_TO_PAPER.get(block), {}).get(defense_name, {}).get(classifier_name)
