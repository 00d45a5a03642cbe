"""Per-image evaluation records and the rates built from them (pure numpy, no JAX).

An :class:`AttackRecord` holds, for one (block, attack, classifier f, defense d) and each of the
block's n images (the first n test images, in order), whether f was right on: the clean image
(``f_clean``: f(x) = y), the clean image through the pipeline (``pipe_clean``: f(d(x)) = y), the
adversarial image (``f_adv``: f(x_adv) = y) and the adversarial image through the pipeline
(``pipe_adv``: f(d(x_adv)) = y); plus SSIM(x, d(x_adv)), SSIM(x, x_adv) and ||x_adv - x||_2.
The identity defense ('none') has pipe_* == f_*.

``through`` says what the attack saw: False = f alone (oblivious / transfer blocks: the paper's
setting, DSR defined), True = the pipeline f(d(.)) (white-box, C&W blocks): there clean means
f(d(x)), adversarial means f(d(x_adv)), ASR is through the pipeline and DSR is not defined.

Definitions (all rates in [0, 1]; NaN over an empty set):

* ACC: clean accuracy (f(x) when not ``through``, f(d(x)) when ``through``).
* ASR: among clean-correct images, the fraction the attack fools (f, or the pipeline).
* DSR (not ``through``): among images whose attack fools f, the fraction f(d(x_adv)) gets right.
* robust accuracy: images right on clean input through the pipeline AND on f(d(x_adv)), over n
  (AutoAttack's convention: an image the pipeline gets wrong on clean input is not robust).
* block robust accuracy: right on clean input through the pipeline and under *every* bounded
  attack of the block (worst case per image), over n, with a Wilson interval with n = images.
* block DSR (per image): among images f gets right on clean input and at least one bounded attack
  fools f, the fraction for which the defense restores every attack that fooled f.
* median L2 (minimum-norm attacks): over clean-correct images, ||x_adv - x||_2 where the attack
  succeeded and +inf where it failed; reported with the success rate (= ASR).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple, Sequence

import numpy as np

from ipgan_jax.metrics import wilson_interval

BOOL_FIELDS = ("f_clean", "pipe_clean", "f_adv", "pipe_adv")
FLOAT_FIELDS = ("ssim_rec", "ssim_adv", "l2")


@dataclass
class AttackRecord:
    """Per-image outcome of one attack; every array has length n (bool or float32)."""
    block: str
    attack: str
    classifier: str
    defense: str
    bounded: bool
    through: bool
    f_clean: np.ndarray
    pipe_clean: np.ndarray
    f_adv: np.ndarray
    pipe_adv: np.ndarray
    ssim_rec: np.ndarray
    ssim_adv: np.ndarray
    l2: np.ndarray

    def __post_init__(self):
        for k in BOOL_FIELDS:
            setattr(self, k, np.asarray(getattr(self, k), bool))
        for k in FLOAT_FIELDS:
            setattr(self, k, np.asarray(getattr(self, k), np.float32))
        n = {len(getattr(self, k)) for k in BOOL_FIELDS + FLOAT_FIELDS}
        if len(n) != 1:
            raise ValueError(f"record arrays differ in length: {n}")

    @property
    def n(self) -> int:
        return len(self.f_clean)

    @property
    def clean_ok(self) -> np.ndarray:
        """Clean-correct images in this record's sense (f, or the pipeline when ``through``)."""
        return self.pipe_clean if self.through else self.f_clean

    @property
    def adv_ok(self) -> np.ndarray:
        return self.pipe_adv if self.through else self.f_adv

    @property
    def fooled(self) -> np.ndarray:
        return self.clean_ok & ~self.adv_ok

    @property
    def robust(self) -> np.ndarray:
        return self.pipe_clean & self.pipe_adv

    def take(self, m: int) -> "AttackRecord":
        """The record restricted to its first m images (blocks run on prefixes of one image list)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw.update({k: getattr(self, k)[:m] for k in BOOL_FIELDS + FLOAT_FIELDS})
        return AttackRecord(**kw)


def _div(a, b) -> float:
    return float(a) / float(b) if float(b) > 0 else float("nan")


def median_l2(rec: AttackRecord) -> float:
    """Median over clean-correct images of the L2 distortion, +inf where the attack failed."""
    d = np.where(rec.fooled, rec.l2.astype(np.float64), np.inf)[rec.clean_ok]
    return float(np.median(d)) if d.size else float("nan")


class AttackMetrics(NamedTuple):
    """Per-attack summary of an :class:`AttackRecord` (see the module docstring)."""
    n: int
    acc: float
    asr: float
    dsr: float
    robust_acc: float
    robust_ci: tuple
    ssim_rec: float
    ssim_adv: float
    median_l2: float
    clean_correct: int
    fooled: int
    defended: int
    robust_correct: int


def attack_metrics(rec: AttackRecord) -> AttackMetrics:
    clean, fooled, robust = rec.clean_ok, rec.fooled, rec.robust
    defended = int(np.sum(fooled & rec.pipe_adv)) if not rec.through else 0
    return AttackMetrics(
        n=rec.n, acc=_div(clean.sum(), rec.n), asr=_div(fooled.sum(), clean.sum()),
        dsr=float("nan") if rec.through else _div(defended, fooled.sum()),
        robust_acc=_div(robust.sum(), rec.n), robust_ci=wilson_interval(int(robust.sum()), rec.n),
        ssim_rec=float(np.mean(rec.ssim_rec)) if rec.n else float("nan"),
        ssim_adv=float(np.mean(rec.ssim_adv)) if rec.n else float("nan"),
        median_l2=median_l2(rec), clean_correct=int(clean.sum()), fooled=int(fooled.sum()),
        defended=defended, robust_correct=int(robust.sum()))


def worst_case(records: Sequence[AttackRecord], name: str = "worst") -> AttackRecord:
    """One record from several attacks on the same images: per image, the first attack that gets
    f(d(x_adv)) wrong (else the last), so SSIM / L2 / f_adv come from that worst-case iterate."""
    if not records:
        raise ValueError("worst_case needs at least one record")
    r0 = records[0]
    adv = np.stack([r.pipe_adv for r in records])                 # [A, n]
    broken = ~adv
    pick = np.where(broken.any(0), np.argmax(broken, 0), len(records) - 1)
    cols = np.arange(r0.n)
    kw = {k: np.stack([getattr(r, k) for r in records])[pick, cols] for k in ("f_adv", "ssim_rec", "ssim_adv", "l2")}
    return AttackRecord(block=r0.block, attack=name, classifier=r0.classifier, defense=r0.defense,
                        bounded=all(r.bounded for r in records), through=r0.through, f_clean=r0.f_clean,
                        pipe_clean=r0.pipe_clean, pipe_adv=adv.all(0), **kw)


class BlockMetrics(NamedTuple):
    """Per-image worst case over a block's bounded attacks for one (classifier, defense)."""
    n: int
    attacks: tuple
    robust_acc: float
    robust_ci: tuple
    robust_correct: int
    dsr: float           # per image; NaN for blocks whose attacks saw the pipeline
    dsr_n: int           # images in the DSR denominator
    asr: float           # per image: fooled by at least one attack (f, or the pipeline when through)
    ssim_rec: float      # mean SSIM(x, d(x_adv)) of the worst-case iterate


def block_metrics(records: Sequence[AttackRecord]) -> BlockMetrics | None:
    """Worst case per image over the bounded records (unbounded ones are left out); None if none."""
    recs = [r for r in records if r.bounded]
    if not recs:
        return None
    w = worst_case(recs)
    fooled_any = np.stack([r.fooled for r in recs]).any(0)
    if recs[0].through:
        dsr, dsr_n = float("nan"), 0
    else:
        restored = np.stack([~r.fooled | r.pipe_adv for r in recs]).all(0)
        dsr_n = int(fooled_any.sum())
        dsr = _div(np.sum(fooled_any & restored), dsr_n)
    robust = w.robust
    return BlockMetrics(n=w.n, attacks=tuple(r.attack for r in recs), robust_acc=_div(robust.sum(), w.n),
                        robust_ci=wilson_interval(int(robust.sum()), w.n), robust_correct=int(robust.sum()),
                        dsr=dsr, dsr_n=dsr_n, asr=_div(fooled_any.sum(), w.clean_ok.sum()),
                        ssim_rec=float(np.mean(w.ssim_rec)) if w.n else float("nan"))


# ---- compact storage for results.json --------------------------------------------------------
def pack_bits(a) -> str:
    """bool [n] -> hex string (numpy packbits, little bit order); decode with :func:`unpack_bits`."""
    return np.packbits(np.asarray(a, bool), bitorder="little").tobytes().hex()


def unpack_bits(s: str, n: int) -> np.ndarray:
    """The first ``n`` booleans of a :func:`pack_bits` hex string; ValueError when it holds fewer."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(s), np.uint8), bitorder="little")[:n].astype(bool)
    if len(bits) < n:
        raise ValueError(f"{len(s)} hex digits hold {len(bits)} bits, not the {n} the record says")
    return bits


def record_to_json(rec: AttackRecord) -> dict:
    """The per-image part of a record: booleans bit-packed, L2 (4 decimals) for unbounded attacks."""
    out = {"block": rec.block, "attack": rec.attack, "classifier": rec.classifier, "defense": rec.defense,
           "bounded": rec.bounded, "through": rec.through, "n": rec.n}
    out.update({k: pack_bits(getattr(rec, k)) for k in BOOL_FIELDS})
    if not rec.bounded:
        out["l2"] = [round(float(v), 4) for v in rec.l2]
    return out


def record_from_json(d: dict) -> AttackRecord:
    """Inverse of :func:`record_to_json` (SSIM is not stored per image: NaN; L2 NaN when absent)."""
    n = int(d["n"])
    nan = np.full(n, np.nan, np.float32)
    return AttackRecord(block=d["block"], attack=d["attack"], classifier=d["classifier"], defense=d["defense"],
                        bounded=bool(d["bounded"]), through=bool(d["through"]),
                        **{k: unpack_bits(d[k], n) for k in BOOL_FIELDS}, ssim_rec=nan, ssim_adv=nan,
                        l2=np.asarray(d["l2"], np.float32) if "l2" in d else nan)
