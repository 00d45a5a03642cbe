"""The ``min_eps`` block: the minimal Linf eps per image, by bisection with the white-box suite.

For every clean-correct image of f(d(.)) it searches the levels of ``eval.min_eps`` (``step``, ``2 step``, ...,
``max_eps``): first the largest level (an image the suite cannot break there is robust beyond the grid), then, round by
round, the middle level of the interval each image is still in. In a round the images are grouped by their middle
level and the members of ``eval.min_eps.suite`` (with the defense's white-box steps, restarts and attack views) run on
each group at that eps, each member only on the images no earlier member broke; a broken image's interval moves
down, a surviving one's up. About log2(levels) + 1 rounds, each costing one suite pass over the images still
searched (eps is traced: one compile per member serves every level). What it yields: ``ipgan_jax.eval.min_eps``.
"""
from __future__ import annotations

import numpy as np

from ipgan_jax.eval.evaluate import Block, view_member_name
from ipgan_jax.eval.min_eps import BLOCK, level_name, levels
from ipgan_jax.eval.records import AttackRecord
from ipgan_jax.eval.suite import MEMBERS, Budget, suite_members


def bisect_levels(num_levels: int, attack_at, candidates: np.ndarray) -> np.ndarray:
    """Per image, the smallest level index at which ``attack_at`` breaks it, by bisection.

    Args:
        num_levels: L, the levels' count (indices 0 .. L-1, increasing eps).
        attack_at: ``fn(level_index, image_indices) -> bool [len(image_indices)]``, True where broken at that level.
        candidates: int [M], the images searched (the clean-correct ones).

    Returns:
        int [M]: the smallest level found broken, L where even the largest level did not break the image. Assumes
        an image broken at a level is broken at every larger one (the search's upper bound).
    """
    lo = np.full(len(candidates), -1)               # largest level known to hold (-1: eps 0, the clean image)
    hi = np.full(len(candidates), num_levels)       # smallest level known broken (L: none yet)
    top = attack_at(num_levels - 1, candidates)
    hi[top] = num_levels - 1
    lo[~top] = num_levels - 1
    while True:
        active = np.flatnonzero(hi - lo > 1)
        if not len(active):
            return hi
        mid = (lo[active] + hi[active]) // 2
        for m in np.unique(mid):
            sel = active[mid == m]
            broken = attack_at(int(m), candidates[sel])
            hi[sel[broken]] = m
            lo[sel[~broken]] = m


class MinEpsBlock(Block):
    """Minimal eps per image by bisection with ``eval.min_eps.suite`` (module docstring)."""
    name = BLOCK

    def __init__(self, ev):
        super().__init__(ev)
        cfg = ev.config.eval.min_eps
        self.levels = levels(cfg.step, cfg.max_eps)
        self.members = suite_members(cfg.suite)

    def units(self):
        return len(self.ev.pairs())

    def run(self, bar=None):
        ev = self.ev
        for clf, d in ev.pairs():
            yield from self.search(clf, d)
            if bar is not None:
                bar.update(1)

    def search(self, clf, d):
        """Yield one record per level for (clf, d)."""
        ev = self.ev
        x, y = ev.images(clf, costly=True)
        n = len(y)
        f_clean, pipe_clean = ev.f_clean[clf][:n], ev.outcome.pipe_clean[(clf, d)][:n]
        s = ev.whitebox_settings(d)
        entries = [(view_member_name(m, v), MEMBERS[m], ev.attack_logits(clf, d, v)) for v in s.views
                   for m in self.members]

        def attack_at(k, rows):
            eps = float(self.levels[k])
            broken = np.zeros(len(rows), bool)
            for name, member, logits_fn in entries:
                todo = np.flatnonzero(~broken)
                budget = Budget(eps, s.steps, s.restarts, int(ev.config.eval.square_queries))
                pipe_adv = ev.attack_rows(clf, d, member, budget, logits_fn, x, y, rows[todo], block=BLOCK,
                                          name=name)[1]
                broken[todo[~pipe_adv]] = True
            return broken

        first = np.full(n, len(self.levels))      # smallest level broken per image (L: none)
        first[~pipe_clean] = -1
        cand = np.flatnonzero(pipe_clean)
        if len(cand):
            first[cand] = bisect_levels(len(self.levels), attack_at, cand)
        nan = np.full(n, np.nan, np.float32)   # no single x_adv per level is kept: no SSIM or L2
        # f_adv carries the pipeline's bit (f alone is not judged here)
        for k, eps in enumerate(self.levels):
            ok = first > k
            yield AttackRecord(block=BLOCK, attack=level_name(eps), classifier=clf, defense=d, bounded=True,
                               through=True, f_clean=f_clean, pipe_clean=pipe_clean, f_adv=ok, pipe_adv=ok,
                               ssim_rec=nan, ssim_adv=nan, l2=nan)
