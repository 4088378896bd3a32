"""More than two classes: one binary problem per pair of classes, then every way to orient them.

Why. With two classes, the labeled rows (where the two features agree) leave two hypotheses on
the target, and a joint DivDis pair finds both. With three classes, any function of the two
features that equals both where they agree fits the labeled rows: on set 456 (digits l and r,
l = r on the labeled rows), l, r, -(l + r) mod 3 and cell-by-cell mixtures of them are
pairwise independent on the target, so mutual information cannot prefer the pure features,
and on many seeds every head comes out mixed (docs/head-search.md).

How. Restricted to the rows whose two features are a and b, the problem is binary again:
  1. A router: an ERM ensemble on the labeled rows. Trained where the features agree, it
     answers with both of them, so a row's two likeliest classes are its features' values on
     most rows where they differ (456: 77%). With `Config.router_mixtures` it also learns
     half-and-half mixtures of two labeled rows of different classes, each labeled once with
     either class (`mixtures`): 80% on 456, but not yet a better score (docs/head-search.md).
  2. For each pair {a, b}: a binary set (the labeled rows of a and b, the unlabeled and target
     rows the router puts in {a, b}) and a joint DivDis pair trained on it: the two
     explanations of "a or b", as on a two-class set.
  3. Composite heads: one per choice of one head of each pair (2^P for P pairs). A composite's
     class probabilities on any row couple its P binary heads, p_k ∝ prod_j p(k beats j),
     over every target row: a head that reads the left digit keeps reading it on rows routed
     to another pair, so a row the router sent astray is not lost (reading each row from its
     routed pair alone scored lower).

The composites join the usual heads rather than replace them: where the usual heads find a
pure feature, they see every row and fit it better than a pair head that saw a third of them.
The labels then choose among all of them as among any heads; one label on a row of pair {a, b}
orients that pair's composites, so this applies when a label per pair fits in the budget
(3 pairs for 3 classes; 6 for 4 would not fit in 5 labels), and only where the feature blocks
(`blocks`) did not pass: heads that see one block each cannot mix the features. Two classes
are left to the usual heads.
"""

import dataclasses
import itertools

import jax
import numpy as np

from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets.loader import Dataset

ROUTER_MEMBERS = 2  # ERM members averaged by the router
PAIR_HEADS = 2  # a joint DivDis pair per pair of classes
_FLOOR = 1e-4  # binary probabilities are clipped to [_FLOOR, 1 - _FLOOR] before coupling


class EmptyPair(ValueError):
    """The router sent no target row to some pair of classes: no composite can be trained."""


def applies(config: Config, dataset: Dataset) -> bool:
    """Whether a run adds pairwise composites to its heads: `config.pairwise` on, more than two
    classes, and a label per pair of classes within the budget (and, `pipeline.train_heads`
    checks, no feature blocks that passed)."""
    k = dataset.num_classes
    return config.pairwise and k > 2 and k * (k - 1) // 2 <= config.budget


def class_pairs(num_classes: int) -> tuple[tuple[int, int], ...]:
    """The pairs (a, b), a < b, of class indices, in a fixed order."""
    return tuple(itertools.combinations(range(num_classes), 2))


def route(probs: np.ndarray, pairs) -> np.ndarray:
    """[N] index into `pairs` of each row's two likeliest classes, from probs [N, C]."""
    top = np.sort(np.argsort(-probs, axis=1, kind="stable")[:, :2], axis=1)
    index = {pair: i for i, pair in enumerate(pairs)}
    return np.array([index[(a, b)] for a, b in top], np.int64)


def mixtures(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, count: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """`count` half-and-half mixtures of two rows of x [N, ...] of different classes y [N],
    each twice, labeled once with either row's class: (inputs [2 count, ...], labels [2 count]),
    a target of one half to each class on average. Empty where y holds one class."""
    first = np.zeros(0, np.int64)
    second = first
    if len(np.unique(y)) > 1:
        while len(first) < count:  # pairs of one class are drawn again
            i, j = rng.integers(0, len(y), (2, 2 * count))
            keep = y[i] != y[j]
            first, second = np.concatenate([first, i[keep]]), np.concatenate([second, j[keep]])
        first, second = first[:count], second[:count]
    mixed = (0.5 * (x[first] + x[second])).astype(x.dtype)
    return np.concatenate([mixed, mixed]), np.concatenate([y[first], y[second]]).astype(y.dtype)


def couple(beats: np.ndarray, pairs, num_classes: int) -> np.ndarray:
    """Class probabilities [N, C] from binary ones: beats [P, N] is p(a rather than b) of
    pair (a, b) = pairs[p]; p_k ∝ prod over j != k of p(k rather than j). With two classes
    this is the binary head itself."""
    log_p = np.zeros((beats.shape[1], num_classes))
    clipped = np.clip(beats, _FLOOR, 1.0 - _FLOOR)
    for (a, b), p in zip(pairs, clipped):
        log_p[:, a] += np.log(p)
        log_p[:, b] += np.log1p(-p)
    log_p -= log_p.max(axis=1, keepdims=True)
    probs = np.exp(log_p)
    return probs / probs.sum(axis=1, keepdims=True)


def orientations(num_pairs: int) -> np.ndarray:
    """[2^P, P] the head each composite takes from each pair (composite i: the bits of i,
    the first pair's the most significant)."""
    return np.array(list(itertools.product(range(PAIR_HEADS), repeat=num_pairs)), np.int64)


def compose(pair_beats: np.ndarray, pairs, num_classes: int) -> np.ndarray:
    """Composite heads' probabilities [2^P, N, C] from every pair's heads' pair_beats
    [P, PAIR_HEADS, N] (p(a rather than b))."""
    return np.stack([couple(pair_beats[np.arange(len(pairs)), choice], pairs, num_classes)
                     for choice in orientations(len(pairs))])


@dataclasses.dataclass
class PairwiseHeads:
    """The run's usual heads, then 2^P composite heads: the router and one binary joint pair per
    pair of classes (duck-types `training.TrainedEnsemble` where the pipeline, the saliency
    maps and the experiments read heads: `predict_proba`, `calibrated_proba`, `masks`, the
    timings, `config`).

    Attributes:
      config: the run's configuration.
      plain: the usual heads (the first of the heads).
      pairs: (a, b) class indices of each binary problem.
      router: the ERM ensemble that routes rows to pairs.
      members: one two-head ensemble per pair; class 0 is a, class 1 is b.
      routed: [P, 3] labeled, unlabeled and target rows each pair trained on.
    """
    config: Config
    plain: training.TrainedEnsemble
    pairs: tuple[tuple[int, int], ...]
    router: training.TrainedEnsemble
    members: tuple[training.TrainedEnsemble, ...]
    routed: np.ndarray
    masks: None = None  # every head sees every input

    @property
    def num_classes(self) -> int:
        return max(b for _, b in self.pairs) + 1

    @property
    def num_composites(self) -> int:
        return PAIR_HEADS ** len(self.pairs)

    @property
    def compile_seconds(self) -> float:
        return sum(e.compile_seconds for e in (self.plain, self.router, *self.members))

    @property
    def train_seconds(self) -> float:
        return sum(e.train_seconds for e in (self.plain, self.router, *self.members))

    def pair_beats(self, x: np.ndarray) -> np.ndarray:
        """[P, PAIR_HEADS, N] each pair head's p(a rather than b) on raw inputs x [N, *S],
        label smoothing's ceiling undone (the heads are pushed by the diversity term)."""
        return np.stack([member.calibrated_proba(x)[..., 0] for member in self.members])

    def composites(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [2^P, N, C] of every composite head on x [N, *S]."""
        return compose(self.pair_beats(x), self.pairs, self.num_classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """[H + 2^P, N, C]: the usual heads' probabilities, then the composites'."""
        return np.concatenate([self.plain.predict_proba(x), self.composites(x)])

    def calibrated_proba(self, x: np.ndarray) -> np.ndarray:
        """[H + 2^P, N, C]: the usual heads' calibrated probabilities, then the composites'."""
        return np.concatenate([self.plain.calibrated_proba(x), self.composites(x)])

    def describe(self) -> str:
        return "; ".join(f"{a}|{b}: {t} target, {u} unlabeled, {lab} labeled rows"
                         for (a, b), (lab, u, t) in zip(self.pairs, self.routed))


def train_pairs(config: Config, dataset: Dataset, key: jax.Array,
                plain: training.TrainedEnsemble) -> PairwiseHeads:
    """Trains the router, then one joint DivDis pair per pair of classes on the rows routed
    to it (module docstring), each averaged over `config.pair_replicates` starts
    (`training.replicate_pair`), and puts their composites after the `plain` heads; the keys
    are `fold_in(key, p)` for pair p, `fold_in(key, P)` for the router,
    `fold_in(key, P + 1 + p)` for pair p's further starts and `fold_in(key, 2 P + 1)` for the
    router's mixtures.

    Raises:
      EmptyPair: no target row is routed to some pair (say, a target without one class).
    """
    pairs = class_pairs(dataset.num_classes)
    router_rows = dataset
    if config.router_mixtures:
        rng = training.numpy_rng(jax.random.fold_in(key, 2 * len(pairs) + 1))
        x_mixed, y_mixed = mixtures(dataset.x_labeled, dataset.y_labeled, rng,
                                    config.router_mixtures * len(dataset.y_labeled))
        router_rows = dataclasses.replace(
            dataset, x_labeled=np.concatenate([dataset.x_labeled, x_mixed]),
            y_labeled=np.concatenate([dataset.y_labeled, y_mixed]))
    router = training.train(config.replace(strategy="erm", num_heads=ROUTER_MEMBERS),
                            router_rows, jax.random.fold_in(key, len(pairs)),
                            desc=f"[{dataset.name}] pair router")
    to_pair = {split: route(router.predict_proba(x).mean(axis=0), pairs)
               for split, x in (("unlabeled", dataset.x_unlabeled), ("target", dataset.x_target))}
    rows = [(np.isin(dataset.y_labeled, pair), to_pair["unlabeled"] == p,
             to_pair["target"] == p) for p, pair in enumerate(pairs)]
    for (a, b), (_, _, target) in zip(pairs, rows):
        if not target.any():
            raise EmptyPair(f"no target row routed to classes {dataset.classes[a]} and "
                            f"{dataset.classes[b]}")
    pair_config = config.replace(strategy="divdis", num_heads=PAIR_HEADS)
    members = []
    for p, ((a, b), (labeled, unlabeled, target)) in enumerate(zip(pairs, rows)):
        binary = dataclasses.replace(
            dataset, x_labeled=dataset.x_labeled[labeled],
            y_labeled=(dataset.y_labeled[labeled] == b).astype(np.int32),
            # the pool falls back to the target rows where no unlabeled row is routed here
            x_unlabeled=dataset.x_unlabeled[unlabeled] if unlabeled.any()
            else dataset.x_target[target],
            x_target=dataset.x_target[target], classes=dataset.classes[[a, b]])
        desc = f"[{dataset.name}] pair {dataset.classes[a]}|{dataset.classes[b]}"
        member = training.train(pair_config, binary, jax.random.fold_in(key, p), desc=desc)
        members.append(training.replicate_pair(
            member, binary, jax.random.fold_in(key, len(pairs) + 1 + p), config.pair_replicates,
            (0, 1), desc=desc))
    routed = [[int(mask.sum()) for mask in masks] for masks in rows]
    return PairwiseHeads(config=config, plain=plain, pairs=pairs, router=router,
                         members=tuple(members), routed=np.array(routed, np.int64))
