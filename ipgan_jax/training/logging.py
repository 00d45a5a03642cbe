"""Metrics to a JSON-lines file and TensorBoard event files (tensorboardX, no TensorFlow)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from ipgan_jax import files


class MetricsWriter:
    """``write(step, {'loss': ..})`` appends ``{"step": s, "time": t, ...}`` to ``metrics.jsonl``
    and scalars to TensorBoard. On resume, rows with step > ``resume_step`` (written after the
    last checkpoint of a killed run) are dropped, so the file stays one consistent history."""

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0, tensorboard: bool = True,
                 filename: str = "metrics.jsonl", enabled: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / filename
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            rows = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
            keep = []
            for ln in rows:
                try:
                    if json.loads(ln).get("step", 0) <= resume_step:
                        keep.append(ln)
                except json.JSONDecodeError:  # a line cut by a kill
                    pass
            files.write_text(self.path, "".join(k + "\n" for k in keep))
        if tensorboard:
            self.tb = SummaryWriter(str(Path(workdir) / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "time": time.time()}
        for k, v in metrics.items():
            v = np.asarray(v)
            row[k] = float(v) if v.size == 1 else v.tolist()
            if self.tb is not None and v.size == 1:
                self.tb.add_scalar(k, float(v), int(step))
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self):
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def progress(total: int, initial: int = 0, desc: str = "", disable: bool | None = None):
    """A tqdm bar (IPGAN_PROGRESS=0 turns it off)."""
    if disable is None:
        disable = os.environ.get("IPGAN_PROGRESS", "auto") == "0"
    return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True,
                mininterval=1.0, smoothing=0.1)
