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
     explanations of "a or b", as on a two-class set. The router sends a row whose features
     agree to one pair of its class only, so each pair's pool is filled with labeled rows of
     a and b (rows whose features agree) up to its share of the target (`agreeing_rows`).
  3. Composite heads: one per choice of one head of each pair (2^P for P pairs). A composite's
     class probabilities on any row couple its P binary heads, p_k ∝ prod_j p(k beats j),
     over every target row: a head that reads the left digit keeps reading it on rows routed
     to another pair, so a row the router sent astray is not lost (reading each row from its
     routed pair alone scored lower).

  4. Which composites are pure, without a label (`cross_reading`): two pairs share a class
     s ({a, b} and {a, c} share a). A head of {a, b} that reads the left digit says "a" on
     the rows of {a, c} whose left digit is a, and guesses on those whose left digit is c (a
     digit it never learned to place); one that reads the right digit does the reverse. So
     on the rows routed to {a, c}, a head of {a, b} says "a" more often where a head of
     {a, c} that reads its side says "a" than where it says "c". Summed over every two pairs,
     this scores each composite; the two pure ones (one feature each) read one side in every
     pair, and a mixture does not. On seeds 0-9 of 456, every family, the most consistent
     composite and its complement were the two pure ones, well clear of the six mixtures
     (docs/head-search.md).
  5. Students (`Config.composites`, "students" by default): each of those two is replaced by
     a student trained on its confident target rows (as the refinement does), which sees
     every row where the pair heads saw a third: 1 point better on 456. A student learned
     those rows as certain, so it carries its composite's doubt
     (`training.with_teacher_doubt`): its classes, the composite's probabilities. With its
     own, sure ones, one label on a row where it guessed dropped it, and the decisions
     suffered; with the composite's, the labels went as for the composites on 56 of 60 runs
     (docs/head-search.md). The two students
     learn together, with the diversity term between them on the target rows
     (`refinement.train_students`): a composite that reads one digit slips to the other's
     class on some rows, a student alone learns those slips back, and they make the two
     agree more than independent features do. A kept student's refinement learns with the
     other student again (`complement`). "consistent" keeps the two composites themselves,
     "all" all 2^P.

The kept heads join the usual heads rather than replace them: where the usual heads find a
pure feature, they see every row and fit it as well. The labels then choose among all of them
as among any heads; one label on a row of pair {a, b} orients that pair's composites, so this
applies when a label per pair fits in the budget (3 pairs for 3 classes; 6 for 4 would not fit
in 5 labels), and only where the feature blocks (`blocks`) did not pass: heads that see one
block each cannot mix the features. Two classes are left to the usual heads.
"""

import dataclasses
import itertools

import jax
import numpy as np

from ambig_jax import refinement
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


def agreeing_rows(dataset: Dataset, pair: tuple[int, int], routed: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Indices of labeled rows of the pair's two classes, drawn without replacement, that fill
    the pair's pool of `routed` target rows up to the target rows whose two features are both
    in the pair: target rows x (q_a + q_b)^2, q the labeled rows' class balance (the target
    is decorrelated: its rows' two features are independent, each of balance q).

    Why. The router sends a row whose two features agree (class a twice) to one pair of class
    a only, by its second likeliest class, which is noise there; so a pair's routed target rows
    can be mostly the rows whose features are its two classes in either order. There the two
    features always differ: the true pair of heads is far from independent, and the joint pair
    mixes them (DivDis's pitfall at a cross rate far from 1/2, HACKATHON.md). The rows it lacks
    are rows whose features agree, and a labeled row is one by construction (456, seeds 0-9:
    docs/head-search.md, "A pair's pool without the rows whose features agree").
    """
    prior = training.labeled_prior(dataset)
    whole = int(round(len(dataset.x_target) * (prior[pair[0]] + prior[pair[1]]) ** 2))
    labeled = np.flatnonzero(np.isin(dataset.y_labeled, pair))
    count = min(max(whole - routed, 0), len(labeled))
    return np.sort(rng.choice(labeled, count, replace=False))


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


def cross_reading(pair_beats: np.ndarray, pairs, to_pair: np.ndarray) -> np.ndarray:
    """[P, 2, P, 2]: R[p, i, q, j], how much pair p's head i reads the side that pair q's head
    j reads (module docstring, step 4), for pairs that share one class s; 0 for the others.

    On the rows routed to q, R is p's head i's mean p(s) where q's head j says s, minus its
    mean where q's head j says q's other class (both weighted by q's head j's probabilities).
    A head that reads q's head's side sees s on the first rows and a class it never placed on
    the others; one that reads the other side, the reverse.

    Args:
      pair_beats: [P, 2, N] each pair head's p(a rather than b) (`PairwiseHeads.pair_beats`).
      pairs: (a, b) of each pair.
      to_pair: [N] the pair each row is routed to (`route`).
    """
    num_pairs = len(pairs)
    reading = np.zeros((num_pairs, PAIR_HEADS, num_pairs, PAIR_HEADS))
    for p, q in itertools.permutations(range(num_pairs), 2):
        shared = set(pairs[p]) & set(pairs[q])
        rows = to_pair == q
        if len(shared) != 1 or not rows.any():
            continue
        s = shared.pop()

        def says_s(pair: int) -> np.ndarray:  # [2, N_q] p(s) of each head of `pair` on q's rows
            beats = pair_beats[pair][:, rows]
            return beats if s == pairs[pair][0] else 1 - beats

        says_s_p = says_s(p)
        for j, weight in enumerate(says_s(q)):
            where_s = says_s_p @ weight / max(weight.sum(), _FLOOR)
            where_other = says_s_p @ (1 - weight) / max((1 - weight).sum(), _FLOOR)
            reading[p, :, q, j] = where_s - where_other
    return reading


def consistency(reading: np.ndarray) -> np.ndarray:
    """[2^P] each composite's consistency: the sum over every two of its pair heads of how
    much each reads the other's side (`cross_reading`), in `orientations` order."""
    num_pairs = reading.shape[0]
    return np.array([sum(reading[p, choice[p], q, choice[q]]
                         for p, q in itertools.permutations(range(num_pairs), 2))
                     for choice in orientations(num_pairs)])


def pure_composites(scores: np.ndarray) -> tuple[int, int]:
    """The most consistent composite and its complement (every pair's other head): the two
    that read one side each, when the pair heads read the two features (module docstring)."""
    best = int(np.argmax(scores))
    return best, len(scores) - 1 - best


def pair_beats(members, x: np.ndarray) -> np.ndarray:
    """[P, PAIR_HEADS, N] each pair head's p(a rather than b) on raw inputs x [N, *S], from
    the pairs' two-head ensembles `members`, label smoothing's ceiling undone (the heads are
    pushed by the diversity term)."""
    return np.stack([member.calibrated_proba(x)[..., 0] for member in members])


@dataclasses.dataclass
class PairwiseHeads:
    """The run's usual heads, then the kept composite heads (`Config.composites`): the router
    and one binary joint pair per pair of classes (duck-types `training.TrainedEnsemble` where
    the pipeline, the saliency maps and the experiments read heads: `predict_proba`,
    `calibrated_proba`, `masks`, the timings, `config`).

    Attributes:
      config: the run's configuration.
      plain: the usual heads (the first of the heads).
      pairs: (a, b) class indices of each binary problem.
      router: the ERM ensemble that routes rows to pairs.
      members: one two-head ensemble per pair; class 0 is a, class 1 is b.
      routed: [P, 4] labeled, unlabeled and target rows each pair trained on, and the
        labeled rows whose features agree added to its pool (`agreeing_rows`).
      scores: [2^P] each composite's consistency on the target rows (`consistency`).
      kept: the composites that follow the usual heads, in `orientations` order.
      students: the kept composites' students, one head each, trained together
        (`refinement.train_students`): head k learned composite k's confident target rows and
        stands for it with its doubt ("students", `training.with_teacher_doubt`); None where the
        composites stand for themselves.
    """
    config: Config
    plain: training.TrainedEnsemble
    pairs: tuple[tuple[int, int], ...]
    router: training.TrainedEnsemble
    members: tuple[training.TrainedEnsemble, ...]
    routed: np.ndarray
    scores: np.ndarray
    kept: tuple[int, ...]
    students: training.TrainedEnsemble | None = None
    masks: None = None  # every head sees every input
    student_masks: None = None  # and so does every refinement student
    pair_students: None = None  # no feature blocks, so no block pair's students

    @property
    def num_classes(self) -> int:
        return max(b for _, b in self.pairs) + 1

    @property
    def num_composites(self) -> int:
        """The heads after the usual ones."""
        return len(self.kept)

    @property
    def kept_description(self) -> str:
        """What the heads after the usual ones are, for the run's log."""
        if self.students is not None:
            return "the students of the most consistent composite and its complement"
        if len(self.kept) == len(self.scores):
            return "the composites"
        return "the most consistent composite and its complement"

    @property
    def _parts(self) -> tuple[training.TrainedEnsemble, ...]:
        students = () if self.students is None else (self.students,)
        return (self.plain, self.router, *self.members, *students)

    @property
    def compile_seconds(self) -> float:
        return sum(e.compile_seconds for e in self._parts)

    @property
    def train_seconds(self) -> float:
        return sum(e.train_seconds for e in self._parts)

    def pair_beats(self, x: np.ndarray) -> np.ndarray:
        """[P, PAIR_HEADS, N] each pair head's p(a rather than b) on raw inputs x [N, *S]
        (`pair_beats`)."""
        return pair_beats(self.members, x)

    def composites(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [2^P, N, C] of every composite head on x [N, *S]."""
        return compose(self.pair_beats(x), self.pairs, self.num_classes)

    def kept_heads(self, x: np.ndarray) -> np.ndarray:
        """[K, N, C]: the kept composites' probabilities on x [N, *S], or their students'
        predictions with the composites' doubt (`training.with_teacher_doubt`)."""
        kept = self.composites(x)[list(self.kept)]
        if self.students is not None:
            classes = self.students.predict_proba(x).argmax(-1)
            return np.stack([training.with_teacher_doubt(teacher, c)
                             for teacher, c in zip(kept, classes)])
        return kept

    def complement(self, head: int) -> int | None:
        """The other kept student where head `head` is one of the two: the head that reads the
        other feature, with which its refinement learns (`refinement.refine`); else None."""
        first = self.plain.config.num_heads
        if self.students is None or not first <= head < first + 2:
            return None
        return 2 * first + 1 - head

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """[H + K, N, C]: the usual heads' probabilities, then the kept heads' (`kept_heads`)."""
        return np.concatenate([self.plain.predict_proba(x), self.kept_heads(x)])

    def calibrated_proba(self, x: np.ndarray) -> np.ndarray:
        """[H + K, N, C]: the usual heads' calibrated probabilities, then the kept heads'."""
        return np.concatenate([self.plain.calibrated_proba(x), self.kept_heads(x)])

    def describe(self) -> str:
        routed = "; ".join(f"{a}|{b}: {t} target, {u} unlabeled, {lab} labeled rows"
                           + (f", {agree} agreeing in its pool" if agree else "")
                           for (a, b), (lab, u, t, agree) in zip(self.pairs, self.routed))
        order = np.argsort(-self.scores, kind="stable")
        ranked = ", ".join(f"{''.join(map(str, orientations(len(self.pairs))[c]))} "
                           f"{self.scores[c]:+.2f}" for c in order)
        return f"{routed}; composites by consistency: {ranked}"


def train_pairs(config: Config, dataset: Dataset, key: jax.Array,
                plain: training.TrainedEnsemble) -> PairwiseHeads:
    """Trains the router, then one joint DivDis pair per pair of classes on the rows routed
    to it (module docstring), its pool joined by labeled rows whose features agree
    (`agreeing_rows`, `Config.pair_agreeing_rows`), each averaged over `config.pair_replicates`
    starts (`training.replicate_pair`), scores the composites' consistency on the target rows,
    and puts the kept ones (`Config.composites`) after the `plain` heads; the keys are
    `fold_in(key, p)` for pair p, `fold_in(key, P)` for the router, `fold_in(key, P + 1 + p)`
    for pair p's further starts, `fold_in(key, 2 P + 1)` for the router's mixtures,
    `fold_in(key, 2 P + 2)` for the kept composites' students and `fold_in(key, 2 P + 3)` for
    the agreeing rows.

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
    rng = training.numpy_rng(jax.random.fold_in(key, 2 * len(pairs) + 3))
    agreeing = [agreeing_rows(dataset, pair, int(target.sum()), rng)
                if config.pair_agreeing_rows else np.zeros(0, np.int64)
                for pair, (_, _, target) in zip(pairs, rows)]
    members = []
    for p, ((a, b), (labeled, unlabeled, target)) in enumerate(zip(pairs, rows)):
        binary = dataclasses.replace(
            dataset, x_labeled=dataset.x_labeled[labeled],
            y_labeled=(dataset.y_labeled[labeled] == b).astype(np.int32),
            # the pool falls back to the target rows where no unlabeled row is routed here
            x_unlabeled=dataset.x_unlabeled[unlabeled] if unlabeled.any()
            else dataset.x_target[target],
            x_target=np.concatenate([dataset.x_target[target], dataset.x_labeled[agreeing[p]]]),
            classes=dataset.classes[[a, b]])
        desc = f"[{dataset.name}] pair {dataset.classes[a]}|{dataset.classes[b]}"
        member = training.train(pair_config, binary, jax.random.fold_in(key, p), desc=desc)
        members.append(training.replicate_pair(
            member, binary, jax.random.fold_in(key, len(pairs) + 1 + p), config.pair_replicates,
            (0, 1), desc=desc))
    routed = [[int(mask.sum()) for mask in masks] + [len(extra)]
              for masks, extra in zip(rows, agreeing)]
    beats = pair_beats(members, dataset.x_target)
    scores = consistency(cross_reading(beats, pairs, to_pair["target"]))
    kept = (tuple(range(len(scores))) if config.composites == "all"
            else pure_composites(scores))
    students = None
    if config.composites == "students":
        composites = compose(beats, pairs, dataset.num_classes)[list(kept)]
        students, _ = refinement.train_students(config, dataset, composites,
                                                jax.random.fold_in(key, 2 * len(pairs) + 2),
                                                desc="students of the kept composites")
    return PairwiseHeads(config=config, plain=plain, pairs=pairs, router=router,
                         members=tuple(members), routed=np.array(routed, np.int64),
                         scores=scores, kept=kept, students=students)
