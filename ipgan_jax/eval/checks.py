"""Sanity checks that fail on gradient masking (Carlini et al. 2019, Athalye et al. 2018).

Each check is run per (classifier, defense) on the costly-block images, through the pipeline
f(d(.)) as a white-box attacker sees it, and gives a :class:`Check` named by one of ``CHECKS``:

* ``steps``: PGD with random start, last iterate, step 2.5 eps / steps: robust accuracy after
  ``steps[1]`` steps must not exceed that after ``steps[0]`` steps by more than ``tol``;
* ``fgsm_vs_pgd``: robust accuracy under PGD-``steps[1]`` must not exceed FGSM's by more than ``tol``;
* ``large_eps``: the white-box suite at each Linf eps of ``large_eps`` (MNIST: 0.5 and 1.0,
  where any image can be turned into a blank one or any other digit) must leave at most
  ``max_large_eps_acc`` robust accuracy;
* ``gradient``: the median over images of ||grad_x margin(f(d(x)))||_2 / ||grad_x margin(f(x))||_2
  (margin loss: it does not vanish on confident predictions) must be at least ``min_grad_ratio``;
* ``bpda``: PGD-``steps[1]`` through d under the attack view ``bpda`` (``Evaluator.attack_logits``: d's exact
  forward pass, the identity's gradient; EOT as configured for d) must not beat the same attack with the exact
  gradient by more than ``bpda_margin`` robust accuracy;
* ``transfer_vs_whitebox``: the white-box block's worst-case robust accuracy must not exceed the
  oblivious / transfer blocks' (each bounded attack, same images), nor that of the white-box suite
  crafted through any other pipeline of the run (``whitebox_transfer`` records, worst case per
  source pipeline), by more than ``tol``.
  Skipped (ok None) when those blocks did not run;
* ``blackbox_vs_whitebox``: in the white-box block, the images that the score-based member (``square``: it uses
  no gradient) breaks while every gradient member leaves them robust must be at most ``tol`` of the images: a
  gradient attack that misses what a random search finds is being misled, on some images if not on all (partial
  masking, the kind a learned generator produces). Skipped when the block has no ``square`` record or no
  gradient member.

``tol`` is ``max(eval.checks.tol, 2 / n)`` (two images of n); thresholds come from
``config.eval.checks``. The decisions are pure functions of the measured rates (``decide_*``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax.attacks import margin
from ipgan_jax.config_lists import parse_names
from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.evaluate import Block
from ipgan_jax.eval.outcome import Check
from ipgan_jax.eval.records import attack_metrics, block_metrics

CHECKS = ("steps", "fgsm_vs_pgd", "large_eps", "gradient", "bpda", "transfer_vs_whitebox", "blackbox_vs_whitebox")
SCORE_BASED = ("square",)   # white-box suite members that use no gradient


def check_names(spec) -> tuple:
    """``eval.checks.names`` ('steps,gradient', or 'all': every check; '' is an error) -> names in ``CHECKS`` order;
    an unknown name raises ValueError (the costly ones, steps / fgsm_vs_pgd / large_eps / bpda, rerun
    attacks through the defense and can be left out where one defense step is expensive)."""
    names = list(parse_names(spec or ""))
    if not names:
        raise ConfigError(f"eval.checks.names={spec!r} names no check: give 'all' or a comma list of "
                          f"{', '.join(CHECKS)} (drop 'checks' from --blocks to run none)")
    if names == ["all"]:
        return CHECKS
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ConfigError(f"eval.checks.names: unknown checks {unknown}; choose from {', '.join(CHECKS)} (or 'all')")
    return tuple(n for n in CHECKS if n in names)


def tolerance(n: int, tol: float) -> float:
    return max(float(tol), 2.0 / max(n, 1))


# ---- decisions (pure) -------------------------------------------------------------------------
def decide_steps(acc_few: float, acc_many: float, steps, tol: float) -> tuple[bool, str]:
    return acc_many <= acc_few + tol, (f"robust acc PGD-{steps[0]} {acc_few:.4f}, PGD-{steps[1]} {acc_many:.4f} "
                                       f"(random start, last iterate; tol {tol:.3f})")


def decide_fgsm_vs_pgd(acc_fgsm: float, acc_pgd: float, steps: int, tol: float) -> tuple[bool, str]:
    return acc_pgd <= acc_fgsm + tol, f"robust acc FGSM {acc_fgsm:.4f}, PGD-{steps} {acc_pgd:.4f} (tol {tol:.3f})"


def decide_large_eps(accs: dict, max_acc: float) -> tuple[bool, str]:
    return all(a <= max_acc for a in accs.values()), ", ".join(
        f"eps {e:g}: {a:.4f}" for e, a in accs.items()) + f" (max {max_acc:.3f})"


def decide_gradient(ratios, min_ratio: float) -> tuple[bool, str]:
    med = float(np.median(ratios)) if len(ratios) else float("nan")
    zero = float(np.mean(np.asarray(ratios) == 0)) if len(ratios) else float("nan")
    return bool(med >= min_ratio), (f"median |grad| through d / without d {med:.3e} (min {min_ratio:g}); "
                                    f"zero-gradient images {100 * zero:.1f}%")


def decide_bpda(acc_exact: float, acc_bpda: float, margin_: float) -> tuple[bool, str]:
    return acc_bpda >= acc_exact - margin_, (f"robust acc exact gradient {acc_exact:.4f}, BPDA (straight-through) "
                                             f"{acc_bpda:.4f} (margin {margin_:.3f})")


def decide_transfer(acc_wb: float, others: dict, tol: float) -> tuple[bool, str]:
    best = min(others.values())
    return acc_wb <= best + tol, (f"white-box robust acc {acc_wb:.4f} vs "
                                  + ", ".join(f"{k} {v:.4f}" for k, v in others.items()) + f" (tol {tol:.3f})")


def decide_blackbox(only_blackbox: int, n: int, tol: float, score_based, gradient) -> tuple[bool, str]:
    frac = only_blackbox / max(n, 1)
    return frac <= tol, (f"{only_blackbox} of {n} images ({100 * frac:.1f}%) broken by {', '.join(score_based)} "
                         f"and by no gradient member ({', '.join(gradient)}) (tol {100 * tol:.1f}%)")


def member_of(attack: str) -> str:
    """A white-box record's suite member: ``square~hybrid#2`` -> ``square``."""
    return attack.split("~", 1)[0].split("#", 1)[0].split("@", 1)[0]


# ---- pieces -----------------------------------------------------------------------------------
def gradient_ratios(logits_fn, ref_logits_fn, x, y):
    """float [B]: ||grad margin(logits_fn)||_2 / ||grad margin(ref_logits_fn)||_2 per image."""
    def norm(fn):
        g = jax.grad(lambda v: jnp.sum(margin(fn(v), y)))(x)
        return jnp.sqrt(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), -1))
    return norm(logits_fn) / jnp.maximum(norm(ref_logits_fn), 1e-12)


class ChecksBlock(Block):
    name = "checks"

    def settings(self):
        c = self.ev.config.eval.checks
        return dict(steps=tuple(int(s) for s in c.steps), large_eps=tuple(float(e) for e in c.large_eps),
                    max_large_eps_acc=float(c.max_large_eps_acc), min_grad_ratio=float(c.min_grad_ratio),
                    bpda_margin=float(c.bpda_margin), tol=float(c.tol), names=check_names(c.names))

    def units(self):
        """Per pair and batch, for the selected checks: PGD many (steps, fgsm_vs_pgd, bpda) / few (steps),
        FGSM, BPDA, the gradient pass, and the suite per large eps."""
        ev, s = self.ev, self.settings()
        names = set(s["names"])
        per = (bool(names & {"steps", "fgsm_vs_pgd", "bpda"}) + ("steps" in names) + ("fgsm_vs_pgd" in names)
               + ("bpda" in names) + ("gradient" in names))
        return sum((per + ("large_eps" in names) * len(ev.suite_entries(d)) * len(s["large_eps"]))
                   * len(ev.batches(c, True)) for c, d in ev.pairs())

    def run(self, bar=None):
        names = self.settings()["names"]
        for clf, d in self.ev.pairs():
            yield from self.check_pair(clf, d, bar, only=names)

    def _robust(self, name, attack, clf, d, attacked, bar):
        rec = self.ev.run_attack("checks", name, attack, clf, [d], attacked, through=True, costly=True,
                                 bar=bar).records[d]
        return attack_metrics(rec).robust_acc

    def check_pair(self, clf, d, bar=None, only=CHECKS) -> list:
        """The checks named in ``only`` for one (classifier, defense), in ``CHECKS`` order."""
        ev, s = self.ev, self.settings()
        unknown = set(only) - set(CHECKS)
        if unknown:
            raise ConfigError(f"unknown checks {sorted(unknown)}; choose from {CHECKS}")
        n = ev.num_images(clf, costly=True)
        tol = tolerance(n, s["tol"])
        eps, (few, many) = ev.eps, s["steps"]
        f = ev.logits(clf)
        out = []

        def add(name, ok_detail, **values):
            out.append(Check(name, clf, d, bool(ok_detail[0]), ok_detail[1], values))

        def pgd(steps):
            return ev.attack("pgd", eps=eps, steps=steps, step_size=2.5 * eps / steps, random_start=True,
                             restarts=1, keep_best=False, loss="ce")
        acc = {}
        if {"steps", "fgsm_vs_pgd", "bpda"} & set(only):
            acc["many"] = self._robust(f"pgd{many}", pgd(many), clf, d, ev.attack_logits(clf, d), bar)
        if "steps" in only:
            acc["few"] = self._robust(f"pgd{few}", pgd(few), clf, d, ev.attack_logits(clf, d), bar)
            add("steps", decide_steps(acc["few"], acc["many"], (few, many), tol), few=acc["few"], many=acc["many"])
        if "fgsm_vs_pgd" in only:
            acc["fgsm"] = self._robust("fgsm", ev.attack("fgsm", eps=eps), clf, d, ev.attack_logits(clf, d), bar)
            add("fgsm_vs_pgd", decide_fgsm_vs_pgd(acc["fgsm"], acc["many"], many, tol), fgsm=acc["fgsm"],
                pgd=acc["many"])
        if "large_eps" in only:
            large = {e: block_metrics(ev.run_suite("checks_large_eps", clf, [d], d, e, through=True,
                                                   bar=bar).records[d]).robust_acc for e in s["large_eps"]}
            add("large_eps", decide_large_eps(large, max(s["max_large_eps_acc"], 2.0 / max(n, 1))),
                **{f"eps_{e:g}": a for e, a in large.items()})
        if "gradient" in only:
            pipe = ev.pipeline(clf, d)
            ratio_fn = jax.jit(lambda x, y: gradient_ratios(pipe, f, x, y))
            ratios = []
            for b in ev.batches(clf, costly=True):
                ratios.append(np.asarray(ratio_fn(b["image"], b["label"]))[np.asarray(b["mask"])])
                if bar is not None:
                    bar.update(1)
            ratios = np.concatenate(ratios)
            add("gradient", decide_gradient(ratios, s["min_grad_ratio"]), median_ratio=float(np.median(ratios)))
        if "bpda" in only:
            acc["bpda"] = self._robust(f"bpda_pgd{many}", pgd(many), clf, d, ev.attack_logits(clf, d, "bpda"), bar)
            add("bpda", decide_bpda(acc["many"], acc["bpda"], s["bpda_margin"]), exact=acc["many"], bpda=acc["bpda"])
        if "transfer_vs_whitebox" in only:
            out.append(self.transfer_check(clf, d, tol))
        if "blackbox_vs_whitebox" in only:
            out.append(self.blackbox_check(clf, d, tol))
        return out

    def blackbox_check(self, clf, d, tol) -> Check:
        recs = [r for r in self.ev.outcome.block_records("whitebox", clf, d) if r.bounded]
        score = [r for r in recs if member_of(r.attack) in SCORE_BASED]
        grad = [r for r in recs if member_of(r.attack) not in SCORE_BASED]
        if not score or not grad:
            return Check("blackbox_vs_whitebox", clf, d, None, "skipped: the whitebox block has no "
                         + ("score-based (square)" if not score else "gradient") + " member", {})
        n = min(r.n for r in recs)
        held = np.all([r.robust[:n] for r in grad], axis=0)           # every gradient member failed here
        broken = ~np.all([r.robust[:n] for r in score], axis=0)       # some score-based member succeeded
        only = int(np.sum(held & broken))
        ok, detail = decide_blackbox(only, n, tol, [r.attack for r in score], [r.attack for r in grad])
        return Check("blackbox_vs_whitebox", clf, d, ok, detail, {"only_blackbox": only, "n": n})

    def transfer_check(self, clf, d, tol) -> Check:
        ev = self.ev
        wb = ev.outcome.block_records("whitebox", clf, d)
        if not wb:
            return Check("transfer_vs_whitebox", clf, d, None, "skipped: the whitebox block did not run", {})
        m = wb[0].n
        others = {}
        for block in ("oblivious", "transfer"):
            for r in ev.outcome.block_records(block, clf, d):
                if r.bounded:
                    others[f"{block} {r.attack}"] = attack_metrics(r.take(m)).robust_acc
        for src, recs in ev.outcome.cross_records(clf, d).items():   # the suite crafted through another pipeline
            others[f"white-box via {src}"] = block_metrics([r.take(m) for r in recs]).robust_acc
        if not others:
            return Check("transfer_vs_whitebox", clf, d, None, "skipped: no oblivious/transfer block ran", {})
        acc_wb = block_metrics(wb).robust_acc
        ok, detail = decide_transfer(acc_wb, others, tol)
        return Check("transfer_vs_whitebox", clf, d, ok, detail + f" ({m} images)", {"whitebox": acc_wb, **others})
