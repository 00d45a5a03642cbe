"""The evaluation harness behind ``run_eval.py``: per-image records, one class per block.

For each target classifier f and defense d ('none' is the identity defense, evaluated like any
other) on the first ``num_examples`` test images (never used for training or model selection:
those use the validation split), each block is a generator that yields
:class:`~ipgan_jax.eval.records.AttackRecord` s and the other items of :mod:`ipgan_jax.eval.outcome`;
:meth:`Evaluator.run` files them into one :class:`~ipgan_jax.eval.outcome.RunOutcome`:

    ev = Evaluator(config, ["lenet"], ["none", "ipgan"], ["fgsm", "pgd"], num_examples=1000)
    outcome = ev.run(make_blocks(ev, ["oblivious", "whitebox"]))     # ipgan_jax.eval.blocks
    outcome.block_records("whitebox", "lenet", "ipgan")

The blocks:

* ``oblivious``: each attack sees f only, then the defense runs (the paper's Table 1 setting);
* ``transfer``: attacks crafted on a different surrogate classifier (black-box);
* ``whitebox``: a suite of attacks (``eval.whitebox_suite``; default PGD with CE and with margin
  loss, ``whitebox_restarts`` random restarts of ``whitebox_steps`` steps of 2.5 eps / steps;
  also ``apgd_ce``, ``apgd_dlr``, ``apgd_t``, ``square``, ``autoattack`` (the cascade) and the group
  ``autoattack_full`` = APGD-CE + APGD-T + Square on every image: the specs of :mod:`ipgan_jax.eval.suite`)
  on the whole pipeline f(d(.)), with
  BPDA and EOT over a defense's random draws where configured (``eval.whitebox_per_defense.<d>``:
  ``suite``, ``steps``, ``restarts``, ``eot_samples``, ``bpda``); worst case per image over the suite;
* ``cw``: C&W-L2 (``eval.cw``) on the pipeline: median L2 (failures +inf) and success rate;
* ``curve``: the white-box suite on f (oblivious) and on f(d(.)) at every eps of ``eval.eps_curve``;
* ``checks``: the sanity checks of :mod:`ipgan_jax.eval.checks`.

The costly blocks (whitebox, cw, curve, checks) use the first ``eval.whitebox_num_examples``
images (all when 0); their records are prefixes of the same image list, so they pair with the
oblivious records by index. Keys: ``fold_in`` of the seed with the block name, the batch index
and the attack name (and eps), never magic offsets.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ipgan_jax import metrics as M
from ipgan_jax import pretrained
from ipgan_jax.attacks import make_attack
from ipgan_jax.attacks.transforms import bpda
from ipgan_jax.config_lists import parse_names
from ipgan_jax.data.pipeline import dataset_family, make_loader
from ipgan_jax.defenses import load_defense
from ipgan_jax.defenses.registry import base_defense
from ipgan_jax.errors import ConfigError, ModelNotFoundError
from ipgan_jax.eval.outcome import CROSS_BLOCK, AttackLog, Curve, RunOutcome, Samples, cross_attack_name
from ipgan_jax.eval.records import AttackRecord, block_metrics
from ipgan_jax.eval.suite import MEMBERS, Budget, Member, member_settings, suite_members
from ipgan_jax.eval.surrogate import fit_surrogate
from ipgan_jax.training.checkpoint import NonFiniteError, tree_fingerprint
from ipgan_jax.training.classifier import classifier_dir, load_classifier

TRANSFER_ATTACKS = ("fgsm", "pgd", "mifgsm")
# minimum-norm attacks: reported in their own rows, never pooled with the Linf-bounded ones
UNBOUNDED = frozenset({"cw_l2", "cw_hc", "deepfool"})
# evaluation names for library attacks with other settings: name -> (library attack, overrides)
ALIASES = {"cw_hc": ("cw_l2", {"confidence": 20.0})}   # high-confidence C&W (kappa 20)


def attack_spec(name: str, dataset: str, **over) -> dict:
    """Evaluation attack settings (library defaults for the dataset, then overrides)."""
    from ipgan_jax.attacks import DEFAULTS
    spec = dict(DEFAULTS[dataset_family(dataset)].get(name, {}))
    spec.update(name=name, **over)
    return spec


def is_bounded(attack: str) -> bool:
    return attack not in UNBOUNDED


def block_key(base, block: str, batch: int, *names) -> jax.Array:
    """Deterministic key of one (block, batch, attack, ...) cell: fold in the block name's CRC,
    the batch index and each name's CRC."""
    k = jax.random.fold_in(base, zlib.crc32(block.encode()) & 0x7FFFFFFF)
    k = jax.random.fold_in(k, batch)
    for nm in names:
        k = jax.random.fold_in(k, zlib.crc32(str(nm).encode()) & 0x7FFFFFFF)
    return k


# The optional fields of an ``eval.whitebox_per_defense.<defense>`` entry besides suite / steps / restarts (whose
# defaults are the eval section's whitebox_suite / whitebox_steps / whitebox_restarts); any other key is refused.
ENTRY_DEFAULTS = {"eot_samples": 1, "bpda": False, "views": "exact"}
ENTRY_KEYS = ("suite", "steps", "restarts", *ENTRY_DEFAULTS)


def check_whitebox_entries(per) -> None:
    """Refuse an ``eval.whitebox_per_defense`` entry with a key the harness does not read (a typo such as
    ``eot_sample`` would otherwise be ignored in silence); ConfigError naming the entry and the key."""
    for d, entry in dict(per).items():
        unknown = sorted(set(dict(entry)) - set(ENTRY_KEYS))
        if unknown:
            raise ConfigError(f"eval.whitebox_per_defense.{d}: unknown {', '.join(unknown)}; an entry takes "
                              f"{', '.join(ENTRY_KEYS)}")


class WhiteboxSettings(NamedTuple):
    steps: int
    restarts: int
    eot_samples: int   # defense draws averaged per gradient (1: plain gradient)
    bpda: bool         # straight-through gradient of the defense (its exact forward pass)
    views: tuple = ("exact",)   # attack views: every suite member runs once per view (see attack_logits)


def parse_views(views) -> tuple:
    """``'exact,straight_through'`` (or a sequence) -> ``('exact', 'straight_through')``; order kept, no repeats."""
    names = parse_names(views)
    if not names:
        raise ConfigError("eval.whitebox_per_defense.<defense>.views is empty; give e.g. 'exact,straight_through'")
    return tuple(dict.fromkeys(names))


def view_member_name(member: str, view: str) -> str:
    """The record name of a suite member run under an attack view: ``pgd_ce`` (exact), ``pgd_ce~hybrid``."""
    return member if view == "exact" else f"{member}~{view}"


def eot_logits(logits_fns):
    """EOT view of a randomised pipeline: fn(x) -> mean over draws of log_softmax(logits_k(x)).

    The CE loss of this is the mean of the per-draw CE losses, so its gradient is the per-draw
    gradients averaged (Athalye et al. 2018)."""
    def fn(x):
        return jnp.mean(jnp.stack([jax.nn.log_softmax(g(x).astype(jnp.float32), -1) for g in logits_fns]), 0)
    return fn


def load_examples(config, n: int, batch_size: int):
    """n test images as masked batches (the test split: evaluation only), from test image
    ``config.eval.first_test_image`` (0: the first n of the canonical order)."""
    loader = make_loader(config.dataset, "test", batch_size, train=False, data_dir=config.data_dir,
                         image_size=config.image_size, num_examples=n, manual_dir=config.manual_dir,
                         first_test_record=int(config.eval.first_test_image))
    return list(loader.iterate(prefetch=0))


def _logits_fn(module, variables):
    return lambda x: module.apply(variables, x, train=False)


class SuiteEntry(NamedTuple):
    """One record of the white-box suite: ``member`` (a :class:`~ipgan_jax.eval.suite.Member`) under attack view
    ``view``, recorded as ``name`` (:func:`view_member_name`)."""
    name: str
    member: Member
    view: str


class PythonLevel(NamedTuple):
    """An attack run in Python, not compiled as a whole: ``fn(logits_fn, x, y, key, eps, mask) -> (x_adv, log)``,
    with eps a float, mask bool [B] the batch's real rows and log a dict or None."""
    fn: Callable


class AttackRun(NamedTuple):
    """What :meth:`Evaluator.run_attack` returns: {defense: AttackRecord}, the attack's logs (dicts) and the
    :class:`~ipgan_jax.eval.outcome.Samples` it kept."""
    records: dict
    logs: list
    samples: list


class SuiteRun(NamedTuple):
    """What :meth:`Evaluator.run_suite` returns: {judged defense: [AttackRecord per suite entry]} and the
    :class:`~ipgan_jax.eval.outcome.AttackLog` s of its Python-level members."""
    records: dict
    logs: list


class Evaluator:
    """The harness: the models, the images, the compiled attacks. :meth:`run` runs blocks and returns what they
    yield as one :class:`~ipgan_jax.eval.outcome.RunOutcome` (``self.outcome``)."""

    def __init__(self, config, classifiers, defenses, attacks, num_examples, seed=0, allow_missing=False):
        self.config, self.allow_missing = config, allow_missing
        self.missing: list = []      # (classifier, defense) pairs skipped (only with allow_missing)
        self.classifiers, self.defenses, self.attacks = list(classifiers), list(defenses), list(attacks)
        self.num_examples = num_examples
        self.key = jax.random.PRNGKey(seed)
        check_whitebox_entries(config.eval.whitebox_per_defense)   # before any model loads
        self.success_margin = float(config.eval.success_margin)
        if not (np.isfinite(self.success_margin) and self.success_margin >= 0):
            raise ConfigError(f"eval.success_margin must be a finite logit margin >= 0, got {self.success_margin}")
        self.run_nonce = int(config.eval.run_nonce)
        if self.run_nonce:   # 0: the keys of runs made before the nonce existed
            self.key = jax.random.fold_in(self.key, self.run_nonce)
        self.f_clean: dict = {}      # clf -> bool [n]: f(x) == y
        self._batches: dict = {}
        self._judges: dict = {}
        self._jits: dict = {}
        self._attack_views: dict = {}
        self._surrogates: dict = {}
        self.targets = {}
        for c in self.classifiers:
            try:
                self.targets[c] = load_classifier(config, c)
            except ModelNotFoundError as e:
                if not allow_missing:
                    raise type(e)(f"{e} (or pass --allow_partial to evaluate without it)") from e
                logging.warning("skipping classifier %s: %s", c, e)
                self.missing.append((c, None))
        self.classifiers = [c for c in self.classifiers if c in self.targets]
        if not self.classifiers:
            raise ModelNotFoundError("none of the requested classifiers is trained; nothing to evaluate")
        self.defend_fns, self.trainers = {}, {}
        for c in self.classifiers:
            for d in self.defenses:
                self.add_defense(c, d)
        # defenses loaded for no classifier (skipped with allow_missing) are not in the tables
        self.defenses = [d for d in self.defenses if any((c, d) in self.defend_fns for c in self.classifiers)]
        self.eps = float(self.attack_settings("pgd")["eps"])
        self.outcome = RunOutcome(self.classifiers, self.defenses)

    def add_defense(self, clf, name, defend_fn=None, trainer=None):
        """Register a defense (loaded by name when ``defend_fn`` is None). One that has not been
        trained raises ``ModelNotFoundError`` (a FileNotFoundError), or is skipped with a logged
        warning when ``allow_missing``."""
        if defend_fn is None:
            try:
                defend_fn, trainer = load_defense(self.config, name, clf, target=self.targets[clf])
            except ModelNotFoundError as e:
                if not self.allow_missing:
                    raise type(e)(f"{e} (or pass --allow_partial to evaluate without it)") from e
                logging.warning("skipping defense %s on %s: %s", name, clf, e)
                self.missing.append((clf, name))
                return
        if name not in self.defenses:
            self.defenses.append(name)   # the same list as outcome.defenses once the outcome exists
        self.defend_fns[(clf, name)], self.trainers[(clf, name)] = defend_fn, trainer

    def run(self, blocks, bar=None) -> RunOutcome:
        """The clean passes, then each block in turn, every item it yields filed into ``self.outcome``."""
        self.run_clean()
        for b in blocks:
            for item in b.run(bar):
                self.outcome.add(item)
        return self.outcome

    def settings(self) -> dict:
        """The run's evaluation settings as ``results.json`` meta records them (JSON-ready values): what a later
        run must match to continue or combine with this one."""
        e = self.config.eval
        return {"dataset": self.config.dataset, "eps": self.eps, "whitebox_suite": e.whitebox_suite,
                "whitebox_steps": e.whitebox_steps, "whitebox_restarts": e.whitebox_restarts,
                "square_queries": int(e.square_queries), "success_margin": float(e.success_margin),
                "whitebox_per_defense": e.whitebox_per_defense.to_dict(), "cw": e.cw.to_dict(),
                "checks": e.checks.to_dict(), "first_test_image": int(e.first_test_image),
                "budget": e.budget.to_dict(), "min_eps": e.min_eps.to_dict(),
                "pretrained": bool(self.config.pretrained), "seed": self.config.seed, "run_nonce": self.run_nonce}

    # ---- models and images ----------------------------------------------------------
    def model_sources(self) -> dict:
        """Which files were evaluated, for ``results.json``: ``{'classifiers/<c>' | 'defenses/<d>/<c>':
        {'source': 'pretrained' | 'workdir' | 'ported', 'path', 'sha256', 'fingerprint'}}`` (the
        fingerprint is :func:`tree_fingerprint` of the loaded values)."""
        out = {}
        for c, (_, variables) in sorted(self.targets.items()):
            rec = {"source": "ported", "path": self.config.classifier_ckpt, "sha256": None}
            if self.config.dataset == "mnist":
                rec = pretrained.source_record(self.config, "classifier", c, None,
                                               classifier_dir(self.config, c) / "params")
            out[f"classifiers/{c}"] = {**rec, "fingerprint": tree_fingerprint(variables)}
        for (c, d), fn in self.defend_fns.items():
            if getattr(fn, "source", None) is not None:
                out[f"defenses/{d}/{c}"] = dict(fn.source)
        return out

    def pairs(self):
        """(classifier, defense) pairs with a loaded defense, in table order."""
        return [(c, d) for c in self.classifiers for d in self.defenses if (c, d) in self.defend_fns]

    def defenses_of(self, clf):
        return [d for c, d in self.pairs() if c == clf]

    def logits(self, clf):
        return _logits_fn(*self.targets[clf])

    def pipeline(self, clf, d):
        f, dfn = self.logits(clf), self.defend_fns[(clf, d)]
        return lambda x: f(dfn(x))

    def batches(self, clf, costly=False):
        """Evaluation batches at ``clf``'s input size; ``costly``: only the first
        ``eval.whitebox_num_examples`` images (padding masked)."""
        size = self.config.image_size
        if self.config.dataset != "mnist":
            from ipgan_jax.models.imagenet import INPUT_SIZE
            size = INPUT_SIZE.get(clf, size)
        if size not in self._batches:
            cfg = self.config.copy_and_resolve_references()
            cfg.image_size = size
            self._batches[size] = load_examples(cfg, self.num_examples, self.config.eval.batch_size)
        out = self._batches[size]
        limit = int(self.config.eval.whitebox_num_examples or 0)
        if not costly or not limit:
            return out
        kept, left = [], limit
        for b in out:
            if left <= 0:
                break
            m = np.asarray(b["mask"])
            keep = m & (np.cumsum(m) <= left)
            left -= int(keep.sum())
            kept.append({**b, "mask": keep})
        return kept

    def images(self, clf, costly=False) -> tuple:
        """``clf``'s evaluation images without the padding, as numpy: x float [N, H, W, C] in [0, 1], y int [N]
        (``costly``: the first ``eval.whitebox_num_examples``)."""
        bs = self.batches(clf, costly)
        return (np.concatenate([np.asarray(b["image"])[np.asarray(b["mask"])] for b in bs]),
                np.concatenate([np.asarray(b["label"])[np.asarray(b["mask"])] for b in bs]))

    def num_images(self, clf, costly=False) -> int:
        return sum(int(np.sum(b["mask"])) for b in self.batches(clf, costly))

    # ---- attacks --------------------------------------------------------------------
    def attack_settings(self, name: str, **over) -> dict:
        """Library defaults for the dataset, ``eval.attack_params[base]``, the alias's overrides,
        ``eval.attack_params[name]``, then ``over``."""
        base, alias_over = ALIASES.get(name, (name, {}))
        params = self.config.eval.attack_params
        extra = dict(params.get(base, {}))
        extra.update(alias_over)
        if name != base:
            extra.update(params.get(name, {}))
        extra.update(over)
        return attack_spec(base, self.config.dataset, **extra)

    def attack(self, name: str, **over):
        return make_attack(self.attack_settings(name, **over), dataset=dataset_family(self.config.dataset))

    def _per_defense(self, d) -> dict:
        """The white-box settings against defense ``d`` (None or 'none': f alone): :data:`ENTRY_DEFAULTS`, the eval
        section's suite / steps / restarts, then ``eval.whitebox_per_defense.<d>`` (a tagged ``<defense>:<tag>``
        falls back to its method's entry)."""
        cfg = self.config.eval
        per = cfg.whitebox_per_defense
        d = d or "none"
        entry = dict(per.get(d, per.get(base_defense(d), {})))
        check_whitebox_entries({d: entry})
        return {**ENTRY_DEFAULTS, "suite": cfg.whitebox_suite, "steps": cfg.whitebox_steps,
                "restarts": cfg.whitebox_restarts, **entry}

    def whitebox_settings(self, d) -> WhiteboxSettings:
        e = self._per_defense(d)
        return WhiteboxSettings(int(e["steps"]), int(e["restarts"]), int(e["eot_samples"]), bool(e["bpda"]),
                                parse_views(e["views"]) if d else ("exact",))

    def suite_entries(self, d) -> list:
        """The white-box suite against defense ``d`` (None: f alone): one :class:`SuiteEntry` per (member,
        attack view), members from ``eval.whitebox_suite`` or ``whitebox_per_defense.<d>.suite``."""
        names = suite_members(self._per_defense(d)["suite"])
        return [SuiteEntry(view_member_name(n, v), MEMBERS[n], v) for v in self.whitebox_settings(d).views
                for n in names]

    def member_settings(self, member: Member, budget: Budget) -> dict:
        """The keyword arguments of ``member``'s attack (or driver) at ``budget``: the one place the white-box
        suite's settings are assembled (``suite.member_settings`` with ``eval.success_margin``)."""
        return member_settings(member, budget, self.success_margin)

    def member_attack(self, member: Member, d):
        """``member``'s attack with ``d``'s budget: a builder eps -> fn(logits_fn, x, y, key) -> x_adv (eps may
        be traced: one compile serves every eps), or a :class:`PythonLevel` for a member with a driver."""
        s = self.whitebox_settings(d)

        def budget(eps):
            return Budget(eps, s.steps, s.restarts, int(self.config.eval.square_queries))
        if member.driver is not None:
            return PythonLevel(lambda logits_fn, x, y, key, eps, mask: member.driver(
                logits_fn, x, y, key, mask, **self.member_settings(member, budget(eps))))
        return lambda eps: self.attack(member.attack, **self.member_settings(member, budget(eps)))

    def run_suite(self, block, clf, defenses, attacked_defense, eps=None, *, through, bar=None) -> SuiteRun:
        """The white-box suite at ``eps`` (default the evaluation eps) against f(d(.)) for
        ``attacked_defense`` d (None: f alone), under each of d's attack views, judged for ``defenses``."""
        eps = self.eps if eps is None else float(eps)
        out, logs = {d: [] for d in defenses}, []
        entries = self.suite_entries(attacked_defense)
        views = {v: self.logits(clf) if attacked_defense is None else self.attack_logits(clf, attacked_defense, v)
                 for v in dict.fromkeys(e.view for e in entries)}    # a bad view fails before any attack
        context = dict(block=block, classifier=clf, attacked=attacked_defense or "none", eps=eps)
        for e in entries:
            run = self.run_attack(block, e.name, self.member_attack(e.member, attacked_defense), clf, defenses,
                                  views[e.view], through=through, costly=True, bar=bar, eps=eps,
                                  cache=("suite", clf, attacked_defense, e.name))
            for d, r in run.records.items():
                out[d].append(r)
            logs += [AttackLog({**context, **log}) for log in run.logs]
        return SuiteRun(out, logs)

    def attack_logits(self, clf, d, view: str = "exact"):
        """What a white-box attacker differentiates: the pipeline f(d(.)) under attack view ``view``
        (``exact``; a defense's own views such as IP-GAN's ``straight_through``, ``hybrid``, ``smooth``:
        ``fusion.FUSION_VIEWS``; ``bpda``: d's gradient replaced by the identity; ``surrogate``: by that of a smooth
        network fitted to imitate d, :meth:`surrogate`), with d's gradient replaced
        by the identity when ``whitebox_per_defense.<d>.bpda`` (BPDA; the forward pass stays exact in every
        case), averaged over ``eot_samples`` draws of the defense's randomness (the defense rebuilt with
        its ``seed_field`` config value + k; draw 0 is the evaluated pipeline itself)."""
        if (clf, d, view) in self._attack_views:
            return self._attack_views[(clf, d, view)]
        s = self.whitebox_settings(d)
        bpda_ = s.bpda or view == "bpda"

        def wrap(g):
            if bpda_:
                return bpda(g)
            if view == "exact":
                return g
            if view == "surrogate":
                return bpda(g, backward=self.surrogate(clf, d))
            if not hasattr(g, "view"):
                raise ConfigError(f"defense {d} has no attack view {view!r} (it is parameter-free); "
                                  "use 'exact' or 'bpda'")
            return g.view(view)
        f, fns = self.logits(clf), [self.defend_fns[(clf, d)]]
        if s.eot_samples > 1:
            trainer = self.trainers.get((clf, d))
            field = getattr(trainer, "seed_field", None)
            if field is None:
                raise ConfigError(f"eval.whitebox_per_defense.{d}.eot_samples={s.eot_samples}, but defense {d} "
                                  "declares no seed_field to redraw; set eot_samples to 1")
            for k in range(1, s.eot_samples):
                cfg = self.config.copy_and_resolve_references()
                sect = base_defense(d)   # a tagged copy reads its method's config section
                cfg[sect][field] = int(cfg[sect][field]) + k
                fns.append(load_defense(cfg, d, clf, target=self.targets[clf])[0])
        views = [lambda x, g=wrap(g): f(g(x)) for g in fns]
        return self._attack_views.setdefault((clf, d, view), views[0] if len(views) == 1 else eot_logits(views))

    def surrogate(self, clf, d):
        """The smooth surrogate of defense ``d`` on ``clf`` for the attack view ``surrogate``
        (:func:`~ipgan_jax.eval.surrogate.fit_surrogate` with ``eval.surrogate``, on training images), fitted on
        first use and kept for the run."""
        if (clf, d) not in self._surrogates:
            s = self.config.eval.surrogate
            loader = make_loader(self.config.dataset, "train", int(s.batch_size), train=False,
                                 data_dir=self.config.data_dir, image_size=self.batches(clf)[0]["image"].shape[1],
                                 num_examples=int(s.num_images), manual_dir=self.config.manual_dir,
                                 validation_size=int(self.config.validation_size))
            images = np.concatenate([np.asarray(b["image"])[np.asarray(b["mask"])] for b in loader.iterate(prefetch=0)])
            fn, mse = fit_surrogate(self.defend_fns[(clf, d)], images, key=block_key(self.key, "surrogate", 0, clf, d),
                                    eps=self.eps, steps=int(s.steps), batch_size=int(s.batch_size),
                                    width=int(s.width), lr=float(s.lr))
            logging.info("surrogate of %s on %s: MSE %.2e to the defense after %d steps", d, clf, mse, s.steps)
            self._surrogates[(clf, d)] = fn
        return self._surrogates[(clf, d)]

    # ---- running one attack ---------------------------------------------------------
    def judge(self, clf, d):
        """jit fn(x, x_adv, y) -> (f_adv, pipe_adv, ssim_rec, ssim_adv, l2, x_rec)."""
        if (clf, d) not in self._judges:
            f, dfn = self.logits(clf), self.defend_fns[(clf, d)]

            def judge(x, x_adv, y):
                x_rec = dfn(x_adv)
                return (jnp.argmax(f(x_adv), -1) == y, jnp.argmax(f(x_rec), -1) == y, M.ssim(x, x_rec),
                        M.ssim(x, x_adv), M.l2_distortion(x, x_adv), x_rec)
            self._judges[(clf, d)] = jax.jit(judge)
        return self._judges[(clf, d)]

    def run_clean(self):
        """f(x) == y per image (``f_clean``), and f(d(x)) == y for each defense (``outcome.pipe_clean``)."""
        for clf in self.classifiers:
            self.f_clean[clf] = self._clean_pass(self.logits(clf), clf, clf)
            for d in self.defenses_of(clf):
                self.outcome.pipe_clean[(clf, d)] = self._clean_pass(self.logits(clf), clf, f"{d} on {clf}",
                                                                     defend=self.defend_fns[(clf, d)])

    def _clean_pass(self, logits_fn, clf, what, defend=None) -> np.ndarray:
        """bool [n]: argmax logits_fn(defend(x)) == y over ``clf``'s batches; non-finite logits or
        defended images raise :class:`NonFiniteError` (argmax of NaN would silently be class 0).
        The defended images are checked too: in jitted code XLA:CPU's fast max lets a ReLU turn
        NaN into 0, so NaN images can give finite logits."""
        def judge(x, y):
            xd = x if defend is None else defend(x)
            logits = logits_fn(xd)
            finite = jnp.all(jnp.isfinite(logits), -1) & jnp.all(jnp.isfinite(xd.reshape(xd.shape[0], -1)), -1)
            return jnp.argmax(logits, -1) == y, finite
        step = jax.jit(judge)
        ok, finite = [], []
        for b in self.batches(clf):
            m = np.asarray(b["mask"])
            o, fin = step(b["image"], b["label"])
            ok.append(np.asarray(o)[m])
            finite.append(np.asarray(fin)[m])
        finite = np.concatenate(finite)
        if not finite.all():
            raise NonFiniteError(f"{what}: non-finite logits on {int((~finite).sum())} of {finite.size} clean test "
                                 f"images; its params are corrupt or training diverged. Retrain it (no numbers "
                                 f"are reported from NaN logits).")
        return np.concatenate(ok)

    def attack_rows(self, clf, d, member: Member, budget: Budget, logits_fn, x, y, rows, *, block: str,
                    name: str) -> tuple:
        """Run one suite member on some images only, packed into full batches, and judge d's pipeline on them.

        The budget and min-eps blocks use it to attack only the images still robust.

        Args:
            clf, d: the classifier and the defense judged.
            member, budget: the suite member and its budget (eps a float in pixel units; for a jit-able member one
                compile serves every eps).
            logits_fn: what the attacker differentiates (``attack_logits`` of an attack view).
            x, y: float [N, H, W, C] in [0, 1] and int [N], numpy, every image of the block.
            rows: int [M], the images to attack.
            block, name: the cell's PRNG key (:func:`block_key` with the batch index and eps).

        Returns:
            ``(f_adv, pipe_adv, ssim_rec, ssim_adv, l2)``, numpy, each [M], in the order of ``rows``.
        """
        rows = np.asarray(rows, int)
        out = [np.zeros(len(rows), t) for t in (bool, bool, np.float32, np.float32, np.float32)]
        if not len(rows):
            return tuple(out)
        # full batches of eval.batch_size, or one power-of-two batch when fewer images are left (padding costs as
        # much as an image)
        bs = min(int(self.config.eval.batch_size), 1 << max(3, int(np.ceil(np.log2(len(rows))))))
        judge = self.judge(clf, d)
        if member.driver is None:
            key = ("rows", clf, d, id(logits_fn), member, budget.steps, budget.restarts, budget.square_queries, bs)
            run = self._jits.get(key)
            if run is None:
                run = self._jits[key] = jax.jit(lambda xb, yb, k, e: self.attack(
                    member.attack, **self.member_settings(member, budget._replace(eps=e)))(logits_fn, xb, yb, k))
        for i, start in enumerate(range(0, len(rows), bs)):
            idx = rows[start:start + bs]
            pad = np.concatenate([idx, np.repeat(idx[:1], bs - len(idx))])   # padding rows repeat a real image
            xb, yb = x[pad], y[pad]
            k = block_key(self.key, block, i, clf, d, name, f"eps={float(budget.eps):g}")
            if member.driver is None:
                x_adv = run(xb, yb, k, jnp.float32(budget.eps))
            else:
                x_adv, _ = member.driver(logits_fn, xb, yb, k, np.arange(bs) < len(idx),
                                         **self.member_settings(member, budget._replace(eps=float(budget.eps))))
            for a, v in zip(out, judge(xb, x_adv, yb)[:5]):
                a[start:start + len(idx)] = np.asarray(v)[:len(idx)]
        return tuple(out)

    def run_attack(self, block, name, attack, clf, defenses, attacked, *, through, costly, bar=None,
                   eps=None, cache=None, samples=False) -> AttackRun:
        """Run ``attack`` against ``attacked`` (logits fn) on ``clf``'s batches and judge each of
        ``defenses`` on the result.

        Args:
            block, name: the records' block and attack names (and the cell's PRNG key, :func:`block_key`).
            attack: fn(logits_fn, x, y, key) -> x_adv; with ``eps`` given, a builder eps -> such a fn, called
                with eps as a traced scalar; or a :class:`PythonLevel` (not jitted; gets the batch's mask).
            clf, defenses, attacked: the classifier, the defenses judged, the logits fn attacked.
            through: whether the attack differentiates the defense (recorded).
            costly: only the first ``eval.whitebox_num_examples`` images.
            cache: a key under which the compiled attack is kept (it must determine ``attack`` and ``attacked``).
            samples: keep the first batch's first 8 images (:class:`~ipgan_jax.eval.outcome.Samples`).

        Returns:
            :class:`AttackRun`."""
        if not self.f_clean:
            self.run_clean()
        fn = self._jits.get(cache) if cache is not None else None
        if fn is None:
            if isinstance(attack, PythonLevel):   # eps as the caller's float, not float32
                def fn(x, y, k, e, m):
                    return attack.fn(attacked, x, y, k, e, m)
            else:
                run = jax.jit((lambda x, y, k, e: attack(attacked, x, y, k)) if eps is None else
                              (lambda x, y, k, e: attack(e)(attacked, x, y, k)))

                def fn(x, y, k, e, m):
                    return run(x, y, k, jnp.float32(e)), None
            if cache is not None:
                self._jits[cache] = fn
        e = 0.0 if eps is None else float(eps)
        key_names = (name,) if eps is None else (name, f"eps={float(eps):g}")
        parts, logs, kept = {d: [] for d in defenses}, [], []
        for i, b in enumerate(self.batches(clf, costly)):
            x, y, m = b["image"], b["label"], np.asarray(b["mask"])
            x_adv, log = fn(x, y, block_key(self.key, block, i, *key_names), e, m)
            if log is not None:
                logs.append(log)
            for d in defenses:
                out = self.judge(clf, d)(x, x_adv, y)
                parts[d].append([np.asarray(a)[m] for a in out[:5]])
                if samples and i == 0:
                    kept.append(Samples(clf, name, d, (np.asarray(x[:8]), np.asarray(x_adv[:8]),
                                                       np.asarray(out[5][:8]))))
            if bar is not None:
                bar.update(1)
        recs = {}
        for d, p in parts.items():
            f_adv, pipe_adv, ssim_rec, ssim_adv, l2 = (np.concatenate(c) for c in zip(*p))
            n = len(f_adv)
            recs[d] = AttackRecord(block=block, attack=name, classifier=clf, defense=d, bounded=is_bounded(name),
                                   through=through, f_clean=self.f_clean[clf][:n],
                                   pipe_clean=self.outcome.pipe_clean[(clf, d)][:n], f_adv=f_adv,
                                   pipe_adv=pipe_adv, ssim_rec=ssim_rec, ssim_adv=ssim_adv, l2=l2)
        return AttackRun(recs, logs, kept)


# ---- blocks: units() is the progress-bar length, run(bar) yields the block's items (outcome.py) --------------
class Block:
    name = ""

    def __init__(self, ev: Evaluator):
        self.ev = ev

    def units(self) -> int:
        raise NotImplementedError

    def run(self, bar=None) -> Iterator:
        raise NotImplementedError


class ObliviousBlock(Block):
    """Each attack on f alone; every defense judged on the same x_adv."""
    name = "oblivious"

    def __init__(self, ev, attacks=None):
        super().__init__(ev)
        self.attacks = list(attacks if attacks is not None else ev.attacks)

    def source(self, clf):
        return clf

    def jobs(self):
        return [(c, a) for c in self.ev.classifiers for a in self.attacks]

    def units(self):
        return sum(len(self.ev.batches(c)) for c, _ in self.jobs())

    def run(self, bar=None):
        ev = self.ev
        for clf, a in self.jobs():
            run = ev.run_attack(self.name, a, ev.attack(a), clf, ev.defenses_of(clf), ev.logits(self.source(clf)),
                                through=False, costly=False, bar=bar, samples=self.name == "oblivious")
            yield from run.records.values()
            yield from run.samples


class TransferBlock(ObliviousBlock):
    """Attacks crafted on a surrogate (``eval.transfer_source``; ``eval.transfer_source_fallback``
    for the classifier that is itself the source); a classifier is never its own surrogate."""
    name = "transfer"

    def __init__(self, ev):
        super().__init__(ev, [a for a in TRANSFER_ATTACKS if a in ev.attacks])
        for c in ev.classifiers:
            s = self.source(c)
            if s != c and s not in ev.targets:
                ev.targets[s] = load_classifier(ev.config, s)

    def source(self, clf):
        cfg = self.ev.config.eval
        return cfg.transfer_source_fallback if clf == cfg.transfer_source else cfg.transfer_source

    def jobs(self):
        return [(c, a) for c, a in super().jobs() if self.source(c) != c]


class WhiteboxBlock(Block):
    """The white-box suite on f(d(.)) for every (classifier, defense), the identity included.

    With ``eval.whitebox_cross`` (default True) the examples crafted through each pipeline are
    also judged on every other defense of the run (cheap: one more forward pass each) and kept as
    block ``whitebox_transfer`` records, attack ``<member>@<source defense>``: transfer between
    pipelines, e.g. from the paper's IP-GAN to the adaptive one. A defense that does better
    against its own white-box attack than against another pipeline's is masking its gradient
    (the ``transfer_vs_whitebox`` check compares them)."""
    name = "whitebox"

    def units(self):
        ev = self.ev
        return sum(len(ev.suite_entries(d)) * len(ev.batches(c, True)) for c, d in ev.pairs())

    def run(self, bar=None):
        ev = self.ev
        for clf, d in ev.pairs():
            judged = ev.defenses_of(clf) if ev.config.eval.whitebox_cross else [d]
            run = ev.run_suite(self.name, clf, judged, d, through=True, bar=bar)
            yield from run.records[d]
            yield from run.logs
            for other in judged:
                if other != d:   # the same x_adv, crafted through d, judged on another pipeline
                    for r in run.records[other]:
                        yield dataclasses.replace(r, block=CROSS_BLOCK, attack=cross_attack_name(r.attack, d))


class CWBlock(Block):
    """C&W-L2 (``eval.cw``) on the pipeline: minimum L2 needed to fool f(d(.))."""
    name = "cw"

    def units(self):
        return sum(len(self.ev.batches(c, True)) for c, _ in self.ev.pairs())

    def run(self, bar=None):
        ev = self.ev
        atk = ev.attack("cw_l2", **dict(ev.config.eval.cw))
        for clf, d in ev.pairs():
            yield from ev.run_attack(self.name, "cw_l2", atk, clf, [d], ev.attack_logits(clf, d), through=True,
                                     costly=True, bar=bar).records.values()


class CurveBlock(Block):
    """Robust accuracy vs eps with the white-box suite: on f then d (oblivious) and on f(d(.))."""
    name = "curve"

    def eps_list(self):
        return [float(e) for e in self.ev.config.eval.eps_curve]

    def units(self):
        ev = self.ev
        n = 0
        for c in ev.classifiers:
            per_eps = len(ev.suite_entries(None)) + sum(len(ev.suite_entries(d)) for d in ev.defenses_of(c))
            n += per_eps * len(ev.batches(c, True))
        return n * len(self.eps_list())

    def run(self, bar=None):
        ev = self.ev
        for clf in ev.classifiers:
            defs = ev.defenses_of(clf)
            cur = {d: {"eps": self.eps_list(), "oblivious": [], "whitebox": [], "oblivious_dsr": [], "n": 0}
                   for d in defs}
            for eps in self.eps_list():
                obl = ev.run_suite("curve_oblivious", clf, defs, None, eps, through=False, bar=bar)
                yield from obl.logs
                for d in defs:
                    wb = ev.run_suite("curve_whitebox", clf, [d], d, eps, through=True, bar=bar)
                    yield from wb.logs
                    bo, bw = block_metrics(obl.records[d]), block_metrics(wb.records[d])
                    cur[d]["oblivious"].append(bo.robust_acc)
                    cur[d]["oblivious_dsr"].append(bo.dsr)
                    cur[d]["whitebox"].append(bw.robust_acc)
                    cur[d]["n"] = bw.n
            for d, values in cur.items():
                yield Curve(clf, d, values)
