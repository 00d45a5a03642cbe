"""Where a trained model came from: the command, the git commit, the hardware and the wall time.

Every call of :meth:`ipgan_jax.training.loop.TrainLoop.run` that trains at least one step appends one
*segment* to ``<run dir>/provenance.jsonl``::

    {"from_step": 0, "to_step": 3000, "wall_s": 1116.2, "command": "python run_train.py --config ...",
     "commit": "eb6c61b...", "dirty": false, "hardware": "2 x AMD EPYC (cpu), jax 0.10.2",
     "started": "2026-12-07T06:01:02Z"}

so a run resumed on another machine keeps the history of every sitting. The exporters copy the
segments into ``result.json``, and the shipped-model manifest (:mod:`ipgan_jax.pretrained`) takes
the command, commit, hardware and total wall time from there. A segment is written when ``run``
returns or raises; a run killed with SIGKILL loses its last segment (the wall time then undercounts).
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from ipgan_jax import files

FILE = "provenance.jsonl"
REPO_ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: str | os.PathLike = REPO_ROOT) -> tuple[Optional[str], Optional[bool]]:
    """``(sha, dirty)`` of the git checkout at ``root``; ``(None, None)`` outside one (an installed wheel).

    ``dirty`` is True when tracked files differ from the commit (untracked files do not count)."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        diff = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return sha, bool(diff.strip())


def hardware() -> str:
    """One line naming the CPU (count and model) and the accelerator JAX runs on, e.g.
    ``"2 x AMD EPYC; jax 0.10.2 on cpu"`` or ``"16 x Intel Xeon ...; jax 0.10.2 on 1 x NVIDIA H100"``."""
    import jax
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    devs = jax.local_devices()
    dev = devs[0].platform if devs[0].platform == "cpu" else f"{len(devs)} x {devs[0].device_kind}"
    return f"{os.cpu_count()} x {model}; jax {jax.__version__} on {dev}"


def command_line(argv: Optional[list] = None) -> str:
    """The command that runs now, as a shell line: ``python run_train.py --config ...``."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        argv[0] = os.path.relpath(argv[0]) if os.path.isabs(argv[0]) else argv[0]
    return shlex.join(["python", *argv])


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def append_segment(run_dir: str | os.PathLike, from_step: int, to_step: int, wall_s: float,
                   started: str, commit: tuple) -> dict:
    """Append one training segment to ``<run_dir>/provenance.jsonl``; returns it.

    ``commit``: ``(sha, dirty)`` of :func:`git_commit`, taken when the segment started (the code that
    trains is the code imported then, whatever the checkout holds by the end)."""
    sha, dirty = commit
    seg = {"from_step": int(from_step), "to_step": int(to_step), "wall_s": round(float(wall_s), 1),
           "command": command_line(), "commit": sha, "dirty": dirty, "hardware": hardware(), "started": started}
    return write_segment(run_dir, seg)


def write_segment(run_dir: str | os.PathLike, seg: dict) -> dict:
    """Append the segment ``seg`` to ``<run_dir>/provenance.jsonl`` (atomic rewrite); returns it."""
    path = Path(run_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text() if path.exists() else ""
    files.write_text(path, lines + json.dumps(seg) + "\n")
    return seg


def read_segments(run_dir: str | os.PathLike) -> list[dict]:
    """The segments of ``<run_dir>/provenance.jsonl`` in order ([] when there is none)."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(segments: list[dict]) -> dict:
    """``{'wall_s': total, 'commands': [...distinct, in order], 'commits': [...], 'hardware': [...],
    'dirty': any}`` over a run's segments."""
    def distinct(key):
        out = []
        for s in segments:
            if s.get(key) not in out:
                out.append(s.get(key))
        return out
    return {"wall_s": round(sum(float(s["wall_s"]) for s in segments), 1), "commands": distinct("command"),
            "commits": distinct("commit"), "hardware": distinct("hardware"),
            "dirty": any(bool(s.get("dirty")) for s in segments), "segments": len(segments)}
