"""The budget ladder: the white-box suite at growing budgets until the robust accuracy stops moving.

A white-box number is an upper bound under the attack that produced it; it means little until a larger budget no
longer lowers it. The block ``budget`` runs the members of ``eval.budget.suite`` at each rung of
``eval.budget.ladder`` (restarts x iterations, each rung at least twice the budget of the one before), in order,
each member only on the images that are still robust (the images every earlier rung and member left robust, packed
into full batches: a converged image costs nothing again). It stops at the first rung that changed the robust
accuracy by less than ``eval.budget.tolerance`` (0.005: half a point): the number at that rung is
the converged one. A ladder that runs out first is reported as not converged.

Records: one per (rung, member, view), block ``budget``, attack ``<member>[~view]/<restarts>x<steps>``. A record is
*cumulative*: an image some earlier rung or member broke is carried as broken (with that attack's SSIM and L2), so
the robust accuracy of a rung's last record is the worst case over everything run up to it, and the block's worst
case over all its records is the final number. :func:`~ipgan_jax.eval.ladder.ladder_rows` reads the rungs back
from the records.

A ladder longer than one sitting runs in pieces: ``eval.budget.resume_from`` names the ``out_dir`` of an earlier
budget run on the same models, test images, seed, views and suite. Its rungs must be the first rungs of
``eval.budget.ladder``; the new run copies their records, starts from the robust images of its last record and runs
the rungs after them (none if the earlier run already converged). Each rung's random starts come from its own
keys, so a ladder run in pieces gives the records of the same ladder run at once.
"""
from __future__ import annotations

import json
import types

import numpy as np

from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.evaluate import Block, is_bounded, view_member_name
from ipgan_jax.eval.ladder import BLOCK, converged_at, ladder_rows, parse_ladder, record_name
from ipgan_jax.eval.records import AttackRecord
from ipgan_jax.eval.suite import MEMBERS, Budget, suite_members

# the settings (Evaluator.settings) a resumed ladder must share with the run it continues, besides the budget's
# suite and tolerance; its rungs, models and images are checked on their own
_RESUME_SETTINGS = ("dataset", "eps", "first_test_image", "seed", "run_nonce", "whitebox_per_defense",
                    "square_queries", "success_margin")


def _as_json(value):
    """``value`` as results.json holds it (tuples as lists), to compare a setting with the one a file recorded."""
    return json.loads(json.dumps(value))


class BudgetBlock(Block):
    """The white-box suite scaled along ``eval.budget.ladder`` until the number stops moving (module docstring)."""
    name = BLOCK

    def __init__(self, ev):
        super().__init__(ev)
        cfg = ev.config.eval.budget
        self.rungs = parse_ladder(cfg.ladder)
        self.members = suite_members(cfg.suite)
        self.tolerance = float(cfg.tolerance)
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"eval.budget.tolerance must be a rate in (0, 1), got {self.tolerance}")
        self.resumed = self._resumed(cfg.get("resume_from"))

    def units(self):
        ev = self.ev
        return sum(len(self.rungs) * len(self.members) * len(ev.whitebox_settings(d).views) for _, d in ev.pairs())

    def run(self, bar=None):
        ev = self.ev
        for clf, d in ev.pairs():
            yield from self.ladder(clf, d, bar)

    def ladder(self, clf, d, bar=None):
        """Yield the records of one (classifier, defense)'s ladder, stopping at the converged rung."""
        ev = self.ev
        x, y = ev.images(clf, costly=True)
        n = len(y)
        f_clean, pipe_clean = ev.f_clean[clf][:n], ev.outcome.pipe_clean[(clf, d)][:n]
        state = {"f_adv": f_clean.copy(), "pipe_adv": pipe_clean.copy(), "ssim_rec": np.ones(n, np.float32),
                 "ssim_adv": np.ones(n, np.float32), "l2": np.zeros(n, np.float32)}
        views = ev.whitebox_settings(d).views
        accs, eps = [], ev.eps
        prior = self._prior(clf, d, views, f_clean, pipe_clean)
        for r in prior:
            yield r
            if bar is not None:
                bar.update(1)
        if prior:
            for k in state:
                state[k] = getattr(prior[-1], k).copy()
            accs = [row.robust_acc for row in ladder_rows(prior)]
        if converged_at(accs, self.tolerance) is not None:
            if bar is not None:
                bar.update(len(self.members) * len(views) * (len(self.rungs) - len(accs)))
            return
        logits = {v: ev.attack_logits(clf, d, v) for v in views}
        for restarts, steps in self.rungs[len(accs):]:
            for member in self.members:
                for v in views:
                    name = record_name(view_member_name(member, v), restarts, steps)
                    # only the images still robust; an image it breaks keeps this attack's values for good, one it
                    # leaves robust carries the latest attack's values (as records.worst_case)
                    todo = np.flatnonzero(pipe_clean & state["pipe_adv"])
                    out = ev.attack_rows(clf, d, MEMBERS[member], Budget(eps, steps, restarts, self._queries(steps)),
                                         logits[v], x, y, todo, block=BLOCK, name=name)
                    for k, a in zip(("f_adv", "pipe_adv", "ssim_rec", "ssim_adv", "l2"), out):
                        state[k][todo] = a
                    yield AttackRecord(block=BLOCK, attack=name, classifier=clf, defense=d,
                                       bounded=is_bounded(MEMBERS[member].attack), through=True, f_clean=f_clean,
                                       pipe_clean=pipe_clean, **{k: v.copy() for k, v in state.items()})
                    if bar is not None:
                        bar.update(1)
            accs.append(float(np.mean(pipe_clean & state["pipe_adv"])))
            if converged_at(accs, self.tolerance) is not None:
                if bar is not None:   # the rungs not run
                    bar.update(len(self.members) * len(views) * (len(self.rungs) - len(accs)))
                return

    def _resumed(self, path):
        """The earlier run ``eval.budget.resume_from`` names (a ResultSet), or None; refused (ConfigError) when it
        evaluated other weights, images, eps, seed, views or suite than this run."""
        if not path:
            return None
        from ipgan_jax.eval.merge import check_same_models
        from ipgan_jax.eval.outcome import ResultsError
        from ipgan_jax.eval.resultset import ResultSet
        ev = self.ev
        try:
            prev = ResultSet.load(path)
        except ResultsError as e:
            raise ConfigError(f"eval.budget.resume_from: {e}") from None
        meta = prev.meta
        settings = ev.settings()
        now = {k: settings[k] for k in _RESUME_SETTINGS}
        now.update({f"budget.{k}": settings["budget"][k] for k in ("suite", "tolerance")})
        then = dict(meta, **{f"budget.{k}": v for k, v in meta.get("budget", {}).items()})
        for k, v in now.items():
            if k in then and _as_json(then[k]) != _as_json(v):
                raise ConfigError(f"eval.budget.resume_from={path} ran with {k}={then[k]!r}, this run has {v!r}: "
                                  "a ladder continues only with the settings it started with")
        if "models" not in meta:
            raise ConfigError(f"eval.budget.resume_from={path} records no model fingerprints: cannot check that it "
                              "evaluated these weights")
        here = types.SimpleNamespace(meta={"models": ev.model_sources()})
        check_same_models([prev, here], [str(path), "this run"], lambda c, d: True, error=ConfigError)
        return prev

    def _prior(self, clf, d, views, f_clean, pipe_clean) -> list:
        """The resumed run's budget records of (clf, d), checked to be a prefix of this ladder on these images."""
        if self.resumed is None:
            return []
        prior = list(self.resumed.block_records(BLOCK, clf, d))
        if not prior:
            return []
        where = f"eval.budget.resume_from ({clf}, {d})"
        if prior[0].n != len(pipe_clean) or not (np.array_equal(prior[0].pipe_clean, pipe_clean)
                                                 and np.array_equal(prior[0].f_clean, f_clean)):
            raise ConfigError(f"{where}: its {prior[0].n} images or their clean predictions differ from this run's "
                              f"{len(pipe_clean)}: use the same --num_examples, whitebox_num_examples and models")
        rows = ladder_rows(prior)
        ran = tuple((r.restarts, r.steps) for r in rows)
        if ran != self.rungs[:len(ran)]:
            raise ConfigError(f"{where} ran the rungs {list(ran)}; eval.budget.ladder {list(self.rungs)} must begin "
                              "with them")
        names = tuple(view_member_name(m, v) for m in self.members for v in views)
        for row in rows:
            if row.members != names:
                raise ConfigError(f"{where}: rung {row.restarts}x{row.steps} ran {list(row.members)}, this run's "
                                  f"suite and views are {list(names)}")
        return prior

    def _queries(self, steps: int) -> int:
        """Square's queries at a rung: ``eval.square_queries`` per 100 iterations of the gradient members."""
        return max(1, int(self.ev.config.eval.square_queries) * steps // 100)
