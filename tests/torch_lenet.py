"""The flax LeNet5 (ipgan_jax.models.classifiers) ported to torch, for the torchattacks cross-check
(tests/test_attacks_torchattacks.py) and benchmarks/bench_attacks.py. Needs torch."""
from __future__ import annotations

import numpy as np
import torch


class TorchLeNet(torch.nn.Module):
    """NCHW float32 [B,1,28,28] in [0,1] -> logits [B,10], with the flax parameters ``params``."""

    def __init__(self, params):
        super().__init__()
        t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.c0 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.c1 = torch.nn.Conv2d(6, 16, 5)
        self.d = torch.nn.ModuleList([torch.nn.Linear(400, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, 10)])
        with torch.no_grad():
            for conv, name in ((self.c0, "Conv_0"), (self.c1, "Conv_1")):
                conv.weight.copy_(t(params[name]["kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
                conv.bias.copy_(t(params[name]["bias"]))
            for i, lin in enumerate(self.d):
                lin.weight.copy_(t(params[f"Dense_{i}"]["kernel"]).T)
                lin.bias.copy_(t(params[f"Dense_{i}"]["bias"]))

    def forward(self, x):
        x = (x - 0.1307) / 0.3081
        x = torch.nn.functional.max_pool2d(torch.relu(self.c0(x)), 2)
        x = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # flatten in flax's HWC order
        x = torch.relu(self.d[0](x))
        x = torch.relu(self.d[1](x))
        return self.d[2](x)
