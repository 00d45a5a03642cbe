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
"""
from __future__ import annotations

import jax
import numpy as np

from ipgan_jax.errors import ConfigError
from ipgan_jax.eval.evaluate import Block, block_key, is_bounded, view_member_name
from ipgan_jax.eval.ladder import BLOCK, converged_at, parse_ladder, record_name
from ipgan_jax.eval.records import AttackRecord
from ipgan_jax.eval.suite import MEMBERS, Budget, suite_members


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
        batches = ev.batches(clf, costly=True)
        x = np.concatenate([np.asarray(b["image"])[np.asarray(b["mask"])] for b in batches])
        y = np.concatenate([np.asarray(b["label"])[np.asarray(b["mask"])] for b in batches])
        n = len(y)
        f_clean, pipe_clean = ev.f_clean[clf][:n], ev.outcome.pipe_clean[(clf, d)][:n]
        state = {"f_adv": f_clean.copy(), "pipe_adv": pipe_clean.copy(), "ssim_rec": np.ones(n, np.float32),
                 "ssim_adv": np.ones(n, np.float32), "l2": np.zeros(n, np.float32)}
        views = ev.whitebox_settings(d).views
        logits = {v: ev.attack_logits(clf, d, v) for v in views}
        accs, eps = [], ev.eps
        for restarts, steps in self.rungs:
            for member in self.members:
                for v in views:
                    name = record_name(view_member_name(member, v), restarts, steps)
                    todo = np.flatnonzero(pipe_clean & state["pipe_adv"])
                    self._attack(clf, d, name, MEMBERS[member], Budget(eps, steps, restarts,
                                 self._queries(steps)), logits[v], x, y, todo, state)
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

    def _queries(self, steps: int) -> int:
        """Square's queries at a rung: ``eval.square_queries`` per 100 iterations of the gradient members."""
        return max(1, int(self.ev.config.eval.square_queries) * steps // 100)

    def _attack(self, clf, d, name, member, budget, logits_fn, x, y, todo, state):
        """Run one member on the images ``todo`` (all still robust; packed into full batches) and write its result
        into ``state`` (the cumulative per-image worst case: an image it breaks keeps this attack's values for good,
        one it leaves robust carries the latest attack's values, as :func:`~ipgan_jax.eval.records.worst_case`)."""
        ev = self.ev
        if not len(todo):
            return
        # full batches of eval.batch_size, or one power-of-two batch when fewer images are left (padding costs
        # as much as an image)
        bs = min(int(ev.config.eval.batch_size), 1 << max(3, int(np.ceil(np.log2(len(todo))))))
        judge = ev.judge(clf, d)
        settings = member.settings(budget)
        if member.driver is None:
            attack = ev.attack(member.attack, **settings)
            run = jax.jit(lambda xb, yb, k: attack(logits_fn, xb, yb, k))
        for i, start in enumerate(range(0, len(todo), bs)):
            idx = todo[start:start + bs]
            rows = np.concatenate([idx, np.repeat(idx[:1], bs - len(idx))])   # padding rows repeat a real image
            xb, yb = x[rows], y[rows]
            key = block_key(ev.key, BLOCK, i, clf, d, name, f"eps={budget.eps:g}")
            if member.driver is None:
                x_adv = run(xb, yb, key)
            else:
                x_adv, _ = member.driver(logits_fn, xb, yb, key, np.arange(bs) < len(idx), **settings)
            out = judge(xb, x_adv, yb)
            for k, a in zip(("f_adv", "pipe_adv", "ssim_rec", "ssim_adv", "l2"), out[:5]):
                state[k][idx] = np.asarray(a)[:len(idx)]
