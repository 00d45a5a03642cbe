"""The flax MNIST classifiers (ipgan_jax.models.classifiers) ported to torch, for the torchattacks
cross-check (tests/test_attacks_torchattacks.py) and the benchmarks (bench_attacks.py,
bench_roofline.py). Every port takes NCHW float32 [B,1,28,28] in [0,1] and returns logits [B,10];
``port(name, params)`` copies the flax parameters (HWIO kernels -> OIHW).

torch is optional: this module imports without it, and torch is imported when a twin is first
used (``port``, ``TorchLeNet``, ``TorchMCNN``, ``TorchAlexNet``, ``PORTS``), which raises
ImportError without torch.
"""
from __future__ import annotations

import numpy as np

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
_TWINS = ("TorchLeNet", "TorchMCNN", "TorchAlexNet")
_built: dict = {}


def _build() -> dict:
    """{name: torch.nn.Module class} of the twins, defined on first use (imports torch)."""
    import torch
    import torch.nn.functional as F

    def _t(a):
        return torch.tensor(np.asarray(a), dtype=torch.float32)

    class _Ported(torch.nn.Module):
        """Convs ``Conv_i`` and denses ``Dense_i`` built from the flax parameter tree, in order."""

        def __init__(self, params, paddings):
            super().__init__()
            self.convs = torch.nn.ModuleList()
            for i, pad in enumerate(paddings):
                k = params[f"Conv_{i}"]["kernel"]            # HWIO
                conv = torch.nn.Conv2d(k.shape[2], k.shape[3], k.shape[:2], padding=pad)
                with torch.no_grad():
                    conv.weight.copy_(_t(k).permute(3, 2, 0, 1))
                    conv.bias.copy_(_t(params[f"Conv_{i}"]["bias"]))
                self.convs.append(conv)
            self.denses = torch.nn.ModuleList()
            i = 0
            while f"Dense_{i}" in params:
                k = params[f"Dense_{i}"]["kernel"]
                lin = torch.nn.Linear(k.shape[0], k.shape[1])
                with torch.no_grad():
                    lin.weight.copy_(_t(k).T)
                    lin.bias.copy_(_t(params[f"Dense_{i}"]["bias"]))
                self.denses.append(lin)
                i += 1

        def head(self, x):
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # flatten in flax's HWC order
            for lin in self.denses[:-1]:
                x = torch.relu(lin(x))
            return self.denses[-1](x)   # dropout layers are identity in eval mode

    class TorchLeNet(_Ported):
        def __init__(self, params):
            super().__init__(params, (2, 0))

        def forward(self, x):
            x = (x - MNIST_MEAN) / MNIST_STD
            for conv in self.convs:
                x = F.max_pool2d(torch.relu(conv(x)), 2)
            return self.head(x)

    class TorchMCNN(_Ported):
        def __init__(self, params):
            super().__init__(params, (0, 0, 0, 0))

        def forward(self, x):
            x = (x - MNIST_MEAN) / MNIST_STD
            for i, conv in enumerate(self.convs):
                x = torch.relu(conv(x))
                if i % 2 == 1:
                    x = F.max_pool2d(x, 2)
            return self.head(x)

    class TorchAlexNet(_Ported):
        def __init__(self, params):
            super().__init__(params, (1, 1, 1, 1, 1))

        def forward(self, x):
            x = (x - MNIST_MEAN) / MNIST_STD
            c = self.convs
            x = F.max_pool2d(torch.relu(c[0](x)), 2)
            x = F.max_pool2d(torch.relu(c[1](x)), 2)
            x = torch.relu(c[4](torch.relu(c[3](torch.relu(c[2](x))))))
            x = F.max_pool2d(x, 3, 2)     # flax max_pool (3,3) stride 2, VALID: 7 -> 3
            return self.head(x)

    twins = {"TorchLeNet": TorchLeNet, "TorchMCNN": TorchMCNN, "TorchAlexNet": TorchAlexNet}
    for name, cls in twins.items():
        cls.__qualname__ = name   # found as module attributes (through __getattr__), e.g. by pickle
    return twins


def _twins() -> dict:
    if not _built:
        _built.update(_build())
    return _built


def __getattr__(name):   # PEP 562: the twin classes and PORTS exist once torch is imported
    if name in _TWINS:
        return _twins()[name]
    if name == "PORTS":
        t = _twins()
        return {"lenet": t["TorchLeNet"], "mcnn": t["TorchMCNN"], "alexnet": t["TorchAlexNet"]}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def port(name: str, params):
    """The torch twin (eval mode, a ``torch.nn.Module``) of MNIST classifier ``name`` with the flax ``params``."""
    return __getattr__("PORTS")[name](params).eval()
