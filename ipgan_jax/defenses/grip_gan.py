"""GRIP-GAN-style attack-free generator (Zheng et al., IEEE TDSC): IP-GAN trained on clean data.

Same generator (U-Net + ``eps_inv * tanh`` fusion), discriminator and weighted losses
(pixel + GAN + target-guided classification + feature) as ``IPGANTrainer``, but G only ever
sees CLEAN training images: it learns a per-sample "robust inverse perturbation" that moves
each input deeper into its class region under the frozen target f, with no attack in the loop
(so no attack is run during training, and training is cheaper than IP-GAN's).

Hyper-parameters are IP-GAN's (``config.ipgan``); any field of ``config.ipgan`` can be
overridden for GRIP-GAN alone in ``config.grip_gan`` (e.g. ``--config.grip_gan.eps_inv=0.3``),
plus ``config.grip_gan.num_steps`` (> 0 overrides ``config.train.num_steps``).
"""
from __future__ import annotations

from ipgan_jax.defenses.ape_gan import JitSampleRows, section_num_steps
from ipgan_jax.defenses.ipgan import IPGANTrainer

_OWN_FIELDS = ("num_steps",)


class GRIPGANTrainer(JitSampleRows, IPGANTrainer):
    name = "grip_gan"

    def __init__(self, config, target_module, target_variables):
        merged = config.copy_and_resolve_references()
        over = config.grip_gan.to_dict() if "grip_gan" in config else {}
        unknown = sorted(k for k in over if k not in _OWN_FIELDS and k not in merged.ipgan)
        if unknown:
            raise ValueError(f"config.grip_gan has unknown field(s) {unknown}; it takes num_steps and "
                             f"any field of config.ipgan: {sorted(merged.ipgan)}")
        merged.ipgan.update({k: v for k, v in over.items() if k not in _OWN_FIELDS})
        super().__init__(merged, target_module, target_variables)
        self.make_adversarial = self.clean_inputs

    @staticmethod
    def clean_inputs(x, y, rng):
        """Attack-free: G's training input is the clean image itself."""
        del y, rng
        return x

    def num_steps(self) -> int:
        return section_num_steps(self.config, "grip_gan") if "grip_gan" in self.config else super().num_steps()
