"""The evaluation harness behind ``run_eval.py``.

For each target classifier f (columns) and defense d (rows) it measures, on the first
``num_examples`` test images:

* block ``oblivious``: attacks see f only, then the defense runs (the paper's Table 1 setting);
* block ``transfer``: attacks crafted on a different surrogate classifier (black-box);
* block ``whitebox``: attacks see the whole pipeline f(d(x)) -- PGD-``whitebox_steps`` with
  ``whitebox_restarts`` restarts, with CE and with margin loss, worst case per example --
  plus C&W-L2 through the pipeline (median L2 distortion with and without the defense).

Each (block, attack, classifier, defense) cell holds summed counts, from which ACC, ASR, DSR,
robust accuracy (with 95% Wilson intervals) and mean SSIM are derived. Sanity checks are
computed from the same runs (``sanity_checks``).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ipgan_jax.attacks import cross_entropy, make_attack
from ipgan_jax.data.pipeline import dataset_family, make_loader
from ipgan_jax.defenses import load_defense
from ipgan_jax import metrics as M
from ipgan_jax.training.classifier import load_classifier

TRANSFER_ATTACKS = ("fgsm", "pgd", "mifgsm")


def attack_spec(name: str, dataset: str, **over) -> dict:
    """Evaluation attack settings (library defaults for the dataset, then overrides)."""
    from ipgan_jax.attacks import DEFAULTS
    spec = dict(DEFAULTS[dataset_family(dataset)].get(name, {}))
    spec.update(name=name, **over)
    return spec


@dataclass
class Cell:
    counts: dict = field(default_factory=lambda: {k: 0 for k in (
        "n", "clean_correct", "attack_success", "defended", "robust_correct", "adv_correct")})
    ssim_rec: list = field(default_factory=list)
    ssim_adv: list = field(default_factory=list)
    l2: list = field(default_factory=list)

    def add(self, c: dict, ssim_rec=None, ssim_adv=None, l2=None):
        for k, v in c.items():
            self.counts[k] += int(v)
        if ssim_rec is not None:
            self.ssim_rec.extend(np.asarray(ssim_rec).tolist())
        if ssim_adv is not None:
            self.ssim_adv.extend(np.asarray(ssim_adv).tolist())
        if l2 is not None:
            self.l2.extend(np.asarray(l2).tolist())

    def summary(self) -> dict:
        r = M.rates(self.counts)
        c = self.counts
        r["dsr_ci"] = M.wilson_interval(c["defended"], c["attack_success"])
        r["robust_acc_ci"] = M.wilson_interval(c["robust_correct"], c["n"])
        r["ssim_rec"] = float(np.mean(self.ssim_rec)) if self.ssim_rec else float("nan")
        r["ssim_adv"] = float(np.mean(self.ssim_adv)) if self.ssim_adv else float("nan")
        if self.l2:
            r["median_l2"] = M.median(self.l2)
        r.update({k: int(v) for k, v in c.items()})
        return r


def _logits_fn(module, variables):
    return lambda x: module.apply(variables, x, train=False)


def load_examples(config, n: int, batch_size: int):
    loader = make_loader(config.dataset, "test", batch_size, train=False, data_dir=config.get("data_dir"),
                         image_size=config.image_size, num_examples=n, manual_dir=config.get("manual_dir"))
    return list(loader.iterate(prefetch=0))


class Evaluator:
    """Runs the blocks for one config; results go to ``self.cells[(block, attack, clf, defense)]``."""

    def __init__(self, config, classifiers, defenses, attacks, num_examples, seed=0):
        self.config = config
        self.classifiers, self.defenses, self.attacks = list(classifiers), list(defenses), list(attacks)
        self.num_examples = num_examples
        self._batches: dict = {}
        self.key = jax.random.PRNGKey(seed)
        self.cells: dict = {}
        self.curves: dict = {}
        self.checks_data: dict = {}
        self.samples: dict = {}
        self.clean_acc: dict = {}
        self.targets = {c: load_classifier(config, c) for c in self.classifiers}
        self.defend_fns = {}
        for c in self.classifiers:
            for d in self.defenses:
                try:
                    self.defend_fns[(c, d)] = load_defense(config, d, c, target=self.targets[c])[0]
                except FileNotFoundError as e:
                    print(f"warning: skipping defense {d} on {c}: {e}")
        self._jit_cache = {}

    def batches_of(self, clf):
        """Evaluation batches at ``clf``'s input size (ImageNet models differ: 224 / 299)."""
        size = self.config.image_size
        if self.config.dataset != "mnist":
            from ipgan_jax.models.imagenet import INPUT_SIZE
            size = INPUT_SIZE.get(clf, size)
        if size not in self._batches:
            cfg = self.config.copy_and_resolve_references()
            cfg.image_size = size
            self._batches[size] = load_examples(cfg, self.num_examples, self.config.eval.batch_size)
        return self._batches[size]

    def costly_batches_of(self, clf):
        """The batches for the costly blocks (white-box, C&W, eps curve, checks): the first
        ``config.eval.whitebox_num_examples`` examples (all when unset or 0)."""
        limit = self.config.eval.get("whitebox_num_examples") or 0
        if not limit:
            return self.batches_of(clf)
        out, left = [], int(limit)
        for b in self.batches_of(clf):
            if left <= 0:
                break
            m = np.asarray(b["mask"])
            keep = m & (np.cumsum(m) <= left)
            left -= int(keep.sum())
            out.append({**b, "mask": keep})
        return out

    @property
    def batches(self):
        return self.batches_of(self.classifiers[0])

    # ---- jitted pieces ---------------------------------------------------------------
    def _attack(self, name, **over):
        """Library defaults for the dataset, then ``config.eval.attack_params[name]``, then ``over``."""
        extra = dict(self.config.eval.get("attack_params", {}).get(name, {}))
        extra.update(over)
        return make_attack(attack_spec(name, self.config.dataset, **extra), dataset=dataset_family(self.config.dataset))

    def _oblivious_fn(self, clf, attack_name, source=None, **over):
        """jit fn(x, y, key) -> (x_adv, pred_clean, pred_adv, {defense: (pred_def, ssim_rec)}, ssim_adv, l2)."""
        ck = ("obl", clf, attack_name, source, tuple(sorted(over.items())))
        if ck in self._jit_cache:
            return self._jit_cache[ck]
        f = _logits_fn(*self.targets[clf])
        src = f if source is None else _logits_fn(*self.targets[source])
        attack = self._attack(attack_name, **over)
        defends = {d: fn for (c, d), fn in self.defend_fns.items() if c == clf}

        def run(x, y, key):
            x_adv = attack(src, x, y, key)
            pred_clean = jnp.argmax(f(x), -1)
            pred_adv = jnp.argmax(f(x_adv), -1)
            per_def = {}
            for d, fn in defends.items():
                x_rec = fn(x_adv)
                per_def[d] = (jnp.argmax(f(x_rec), -1), M.ssim(x, x_rec), x_rec)
            return x_adv, pred_clean, pred_adv, per_def, M.ssim(x, x_adv), M.l2_distortion(x, x_adv)

        self._jit_cache[ck] = jax.jit(run)
        return self._jit_cache[ck]

    def _whitebox_fn(self, clf, defense, attack_name, **over):
        """jit fn(x, y, key) -> (x_adv, pred_clean_through, pred_adv_f, pred_through) attacking f(d(x))."""
        ck = ("wb", clf, defense, attack_name, tuple(sorted(over.items())))
        if ck in self._jit_cache:
            return self._jit_cache[ck]
        f = _logits_fn(*self.targets[clf])
        d = self.defend_fns[(clf, defense)]
        through = lambda x: f(d(x))  # noqa: E731
        attack = self._attack(attack_name, **over)

        def run(x, y, key):
            x_adv = attack(through, x, y, key)
            return (x_adv, jnp.argmax(f(x), -1), jnp.argmax(f(x_adv), -1), jnp.argmax(through(x_adv), -1),
                    M.ssim(x, d(x_adv)), M.l2_distortion(x, x_adv))

        self._jit_cache[ck] = jax.jit(run)
        return self._jit_cache[ck]

    def _cell(self, *k) -> Cell:
        return self.cells.setdefault(k, Cell())

    # ---- blocks ----------------------------------------------------------------------
    def run_clean(self):
        """Clean accuracy of f without and with each defense: ``self.clean_acc[(clf, defense)]``."""
        self.clean_acc = {}
        for clf in self.classifiers:
            f = _logits_fn(*self.targets[clf])
            for d in self.defenses:
                if d != "none" and (clf, d) not in self.defend_fns:
                    continue
                dfn = (lambda x: x) if d == "none" else self.defend_fns[(clf, d)]
                fn = jax.jit(lambda x, y, m, dfn=dfn, f=f: jnp.sum((jnp.argmax(f(dfn(x)), -1) == y) & m))
                correct = sum(int(fn(b["image"], b["label"], b["mask"])) for b in self.batches_of(clf))
                self.clean_acc[(clf, d)] = correct / sum(int(np.sum(b["mask"])) for b in self.batches_of(clf))
        return self.clean_acc

    def run_oblivious(self, block="oblivious", source_of=None, attacks=None, bar=None):
        for clf in self.classifiers:
            source = source_of(clf) if source_of else None
            if source_of is not None and source == clf:
                print(f"note: transfer block skipped for {clf}: its surrogate would be itself")
                continue
            # the costly blocks see only the first whitebox_num_examples images: keep oblivious PGD counts
            # on exactly those images too, so the white-box >= oblivious check compares paired examples
            limited = bool(self.config.eval.get("whitebox_num_examples"))
            for a in attacks or self.attacks:
                fn = self._oblivious_fn(clf, a, source)
                subset = self.costly_batches_of(clf) if (limited and block == "oblivious" and a == "pgd") else []
                for i, b in enumerate(self.batches_of(clf)):
                    key = jax.random.fold_in(jax.random.fold_in(self.key, i), zlib.crc32(a.encode()))
                    x, y, m = b["image"], b["label"], b["mask"]
                    x_adv, pc, pa, per_def, ssim_adv, l2 = fn(x, y, key)
                    ok = np.asarray(m)
                    fooled = np.asarray((pc == y) & (pa != y)) & ok
                    for d in self.defenses:
                        if d == "none":
                            cnt = M.counts(pc, pa, pa, y, m)
                            self._cell(block, a, clf, d).add(cnt, None, np.asarray(ssim_adv)[ok],
                                                             np.asarray(l2)[fooled])
                        elif d in per_def:
                            pd, ssim_rec, x_rec = per_def[d]
                            cnt = M.counts(pc, pa, pd, y, m)
                            self._cell(block, a, clf, d).add(cnt, np.asarray(ssim_rec)[ok], np.asarray(ssim_adv)[ok])
                            if i < len(subset):
                                self._cell("oblivious_subset", a, clf, d).add(M.counts(pc, pa, pd, y, subset[i]["mask"]))
                            if i == 0 and block == "oblivious":
                                self.samples[(clf, a, d)] = (np.asarray(x[:8]), np.asarray(x_adv[:8]),
                                                             np.asarray(x_rec[:8]))
                    if bar is not None:
                        bar.update(1)

    def run_whitebox(self, bar=None):
        cfg = self.config.eval
        for clf in self.classifiers:
            for d in self.defenses:
                if d == "none" or (clf, d) not in self.defend_fns:
                    continue
                fns = [self._whitebox_fn(clf, d, "pgd", steps=cfg.whitebox_steps, restarts=cfg.whitebox_restarts,
                                         loss=loss, random_start=True) for loss in ("ce", "margin")]
                for i, b in enumerate(self.costly_batches_of(clf)):
                    x, y, m = b["image"], b["label"], b["mask"]
                    worst_pd = worst_pa = None
                    for j, fn in enumerate(fns):
                        x_adv, pc, pa, pd, ssim_rec, _ = fn(x, y, jax.random.fold_in(self.key, 1000 * i + j))
                        pd, pa = np.asarray(pd), np.asarray(pa)
                        if worst_pd is None:
                            worst_pd, worst_pa = pd.copy(), pa.copy()
                        else:  # an example counts as broken if either loss broke it
                            broken = pd != np.asarray(y)
                            worst_pd = np.where(broken, pd, worst_pd)
                            worst_pa = np.where(broken, pa, worst_pa)
                    pc_f = np.asarray(pc)
                    self._cell("whitebox", "pgd", clf, d).add(
                        M.counts(pc_f, worst_pa, worst_pd, np.asarray(y), m), np.asarray(ssim_rec)[np.asarray(m)])
                    if bar is not None:
                        bar.update(1)

    def run_cw_distortion(self, bar=None):
        """Median L2 that C&W-L2 needs to fool f alone vs the defended pipeline f(d(.))."""
        for clf in self.classifiers:
            for d in self.defenses:
                if d != "none" and (clf, d) not in self.defend_fns:
                    continue
                if d == "none":
                    fn = self._oblivious_fn(clf, "cw_l2")
                else:
                    fn = self._whitebox_fn(clf, d, "cw_l2")
                cell = self._cell("cw_distortion", "cw_l2", clf, d)
                for i, b in enumerate(self.costly_batches_of(clf)):
                    x, y, m = b["image"], b["label"], b["mask"]
                    out = fn(x, y, jax.random.fold_in(self.key, 5000 + i))
                    if d == "none":
                        _, pc, pa, _, _, l2 = out
                        through = pa
                    else:
                        _, pc, pa, through, _, l2 = out
                    ok = np.asarray(m)
                    success = (np.asarray(through) != np.asarray(y)) & ok
                    cell.add(M.counts(pc, pa, through, y, m), l2=np.asarray(l2)[success])
                    if bar is not None:
                        bar.update(1)

    def run_eps_curve(self, attack="pgd", bar=None):
        """Undefended / defended (oblivious) / defended (white-box) accuracy and DSR vs eps, PGD-20."""
        eps_list = [float(e) for e in self.config.eval.eps_curve]
        for clf in self.classifiers:
            for d in self.defenses:
                if d != "none" and (clf, d) not in self.defend_fns:
                    continue
                obl, wb, obl_dsr, wb_dsr = [], [], [], []
                for eps in eps_list:
                    over = dict(eps=eps, steps=20, step_size=max(eps / 8, 1e-4))
                    cnt_o = {k: 0 for k in Cell().counts}
                    cnt_w = dict(cnt_o)
                    for i, b in enumerate(self.costly_batches_of(clf)):
                        x, y, m = b["image"], b["label"], b["mask"]
                        key = jax.random.fold_in(self.key, 7000 + i)
                        _, pc, pa, per_def, _, _ = self._oblivious_fn(clf, attack, **over)(x, y, key)
                        pd = pa if d == "none" else per_def[d][0]
                        for k, v in M.counts(pc, pa, pd, y, m).items():
                            cnt_o[k] += int(v)
                        if d != "none":
                            _, pc2, pa2, pt, _, _ = self._whitebox_fn(clf, d, attack, **over)(x, y, key)
                            for k, v in M.counts(pc2, pa2, pt, y, m).items():
                                cnt_w[k] += int(v)
                        if bar is not None:
                            bar.update(1)
                    r_o, r_w = M.rates(cnt_o), M.rates(cnt_w)
                    obl.append(r_o["robust_acc"])
                    obl_dsr.append(r_o["dsr"])
                    wb.append(r_w["robust_acc"] if d != "none" else float("nan"))
                    wb_dsr.append(r_w["dsr"] if d != "none" else float("nan"))
                self.curves[(clf, d)] = {"eps": eps_list, "oblivious": obl, "whitebox": wb,
                                         "oblivious_dsr": obl_dsr, "whitebox_dsr": wb_dsr}

    def gradient_check(self):
        """Mean |d CE(f(d(x)))/dx| and the fraction of examples whose gradient is exactly 0."""
        out = {}
        for (clf, d), dfn in self.defend_fns.items():
            if d == "none":
                continue
            b = self.costly_batches_of(clf)[0]
            x, y = jnp.asarray(b["image"]), jnp.asarray(b["label"])
            f = _logits_fn(*self.targets[clf])
            loss = lambda x: jnp.sum(cross_entropy(f(dfn(x)), y))  # noqa: E731
            g = np.asarray(jax.jit(jax.grad(loss))(x)).reshape(x.shape[0], -1)
            out[(clf, d)] = {"mean_abs_grad": float(np.mean(np.abs(g))),
                             "zero_grad_fraction": float(np.mean(np.all(g == 0, axis=1)))}
        self.checks_data["gradients"] = out
        return out

    def steps_check(self, clf, d, steps=(10, 100)):
        """White-box robust accuracy for PGD with few vs many steps (must not go up)."""
        accs = []
        for s in steps:
            cnt = {k: 0 for k in Cell().counts}
            fn = self._whitebox_fn(clf, d, "pgd", steps=s, random_start=False) if d != "none" else \
                self._oblivious_fn(clf, "pgd", steps=s, random_start=False)
            for i, b in enumerate(self.costly_batches_of(clf)[:2]):
                x, y, m = b["image"], b["label"], b["mask"]
                out = fn(x, y, jax.random.fold_in(self.key, 9000 + i))
                pc, pa, pt = (out[1], out[2], out[3]) if d != "none" else (out[1], out[2], out[2])
                for k, v in M.counts(pc, pa, pt, y, m).items():
                    cnt[k] += int(v)
            accs.append(M.rates(cnt)["robust_acc"])
        self.checks_data.setdefault("steps", {})[(clf, d)] = dict(zip(steps, accs))
        return accs
