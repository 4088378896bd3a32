"""The label loop and its pure decisions: which point to ask, which head to keep, how good it is.

Shapes: H heads, N target rows, C classes. `probs` [H, N, C] are the heads' predictions on the
target set; `revealed` maps a target row to its class index. `resolve` is the one label loop
(the pipeline runs it against the oracle, the replay against a set's hidden labels); the
`ask` callback it is given is its only side effect, and every decision in it is a pure
function of the heads, the labels so far and the run's `Rule`.

Noise model. Given that head h is the right hypothesis, a revealed label y at row x follows
the head's prediction up to a label-noise rate eps: P(y | x, h) = (1 - eps) p_h(y | x) + eps / C.
eps has a Beta prior (`Rule.prior_noise`, `Rule.prior_strength`), updated by the revealed labels
through this same likelihood under the kept head: a label that the head gets wrong where it was
unsure costs less than one it gets wrong where it was sure, since the head's own doubt is
already part of the expected accuracy.

Readings of a head's probabilities enter the accuracy estimate (`readings`). Calibrated: the
head is right at x with probability p_h(pred | x), the probabilities taken as given or
sharpened (`Rule.temperatures`). Exact: the head is the hypothesis and its doubt is an
artefact of training (the diversity term makes pushed heads hedge below their accuracy, while
an ERM head is sure everywhere). The revealed labels weigh the readings by their evidence,
starting from `Rule.exact_prior` for the exact one: right labels where the head hedged favour
the sharper readings, an error where it was sure favours the flatter ones.

The labels are chosen on purpose (where the heads disagree, then where the leader is weakest), so
they are no random sample of the kept head's accuracy; the estimate instead reads them as
evidence between hypotheses, which is valid however the rows were chosen. Besides "head h is the
label's feature" (prior 1 - `Rule.unidentified_prior`, shared evenly), one hypothesis says no
head is: the data do not identify the label (sets 06 and 07), and each row's label is the class
of a head drawn at random (`vote_share`). The heads' hypotheses predict a label where their
head is sure; this one predicts each of the disputed classes at its share of the heads. An error
that a sure head makes where the heads are split moves weight to it; an error where the kept
head was unsure barely does. Once a head leads, the last labels test exactly this
(`identification_query`). Under it the kept head scores its agreement with a head drawn at
random (mean: its vote share). The estimate mixes the two by their posterior, and submitting
when the mean beats the set's default score (`decide`) maximises the expected challenge score,
which is linear in the accuracy.
"""

import dataclasses
import math
from typing import Callable

import numpy as np

from ambig_jax.config import Rule

DEFAULT_RULE = Rule()


def _likelihood(probs: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """[H, K] P(label_k | row_k, head h) under the noise model; probs [H, K, C], labels [K]."""
    num_classes = probs.shape[-1]
    picked = np.take_along_axis(probs, labels[None, :, None], axis=-1)[..., 0]
    return (1.0 - eps) * picked + eps / num_classes


def hard(probs: np.ndarray) -> np.ndarray:
    """One-hot [..., C] of each head's predicted class."""
    return np.eye(probs.shape[-1])[probs.argmax(-1)]


def sharpen(probs: np.ndarray, temperature: float) -> np.ndarray:
    """probs ** (1 / temperature), renormalised over the last axis (1: as given; towards 0:
    `hard`). The predicted classes do not change."""
    if temperature == 1.0:
        return probs
    log = np.log(np.clip(probs, 1e-30, 1.0)) / temperature
    sharp = np.exp(log - log.max(axis=-1, keepdims=True))
    return sharp / sharp.sum(axis=-1, keepdims=True)


def readings(rule: Rule, *probs: np.ndarray) -> list[tuple[str, float, tuple[np.ndarray, ...]]]:
    """The readings of the heads' probabilities that the estimate weighs: (name, prior, each of
    `probs` so read). Calibrated, at each of `rule.temperatures` (sharpened, `sharpen`),
    sharing the prior 1 - `rule.exact_prior` evenly; exact (`hard`), `rule.exact_prior`.
    Readings of prior 0 are left out."""
    calibrated = (1.0 - rule.exact_prior) / len(rule.temperatures)
    found = [(f"calibrated T={t:g}", calibrated, tuple(sharpen(p, t) for p in probs))
             for t in rule.temperatures]
    found.append(("exact", rule.exact_prior, tuple(hard(p) for p in probs)))
    return [reading for reading in found if reading[1] > 0.0]


def head_posterior(probs: np.ndarray, revealed: dict[int, int],
                   eps: float = DEFAULT_RULE.query_noise,
                   prior: np.ndarray | None = None) -> np.ndarray:
    """Posterior [H] over which head is the right hypothesis, from a uniform (or given) prior.

    A head stands for the hypothesis "labels follow my predicted class", so the likelihood
    uses its hard predictions: a head whose probabilities are merely soft (diversity-trained
    heads often are) must not survive a contradicting label at a ratio of 3:1.
    """
    num_heads = probs.shape[0]
    log_post = np.log(prior) if prior is not None else np.zeros(num_heads)
    if revealed:
        rows = np.fromiter(revealed.keys(), int)
        labels = np.fromiter(revealed.values(), int)
        log_post = log_post + np.log(_likelihood(hard(probs[:, rows]), labels, eps)).sum(axis=1)
    log_post = log_post - log_post.max()
    post = np.exp(log_post)
    return post / post.sum()


def _entropy(p: np.ndarray, axis=-1) -> np.ndarray:
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def information_gain(probs: np.ndarray, posterior: np.ndarray,
                     eps: float = DEFAULT_RULE.query_noise):
    """[N] expected information (nats) that a row's label gives about which head is right.

    I(head; y | x) = H(sum_h w_h P(y | x, h)) - sum_h w_h H(P(y | x, h)). With two confident
    heads it is largest exactly where they disagree.
    """
    num_classes = probs.shape[-1]
    noisy = (1.0 - eps) * probs + eps / num_classes  # [H, N, C]
    mixture = np.einsum("h,hnc->nc", posterior, noisy)
    return _entropy(mixture) - np.einsum("h,hn->n", posterior, _entropy(noisy))


def alive_predictions(probs: np.ndarray, posterior: np.ndarray,
                      min_weight: float = 0.01) -> np.ndarray:
    """[H_alive, N] predicted classes of the heads that still matter (posterior >=
    `min_weight`)."""
    return probs[posterior >= min_weight].argmax(-1)


def disagreement_pattern(probs: np.ndarray, posterior: np.ndarray, min_weight: float = 0.01):
    """[N] id of each row's tuple of predicted classes by the heads that still matter."""
    predictions = alive_predictions(probs, posterior, min_weight)
    _, ids = np.unique(predictions.T, axis=0, return_inverse=True)
    return ids.reshape(-1)


def select_query(probs: np.ndarray, posterior: np.ndarray, revealed: dict[int, int],
                 rng: np.random.Generator, rule: Rule = DEFAULT_RULE) -> int:
    """The next target row to ask: most informative, never asked before.

    Among rows within `rule.near_best_gain` of the best gain, prefers a pattern of disagreement
    (head A says x while B says y, or the reverse; `disagreement_pattern`) that has been asked
    least, so the labels cover every kind of disagreement. Once one head holds
    `rule.pattern_from` of the posterior, asks instead the most informative row of the pattern
    whose unasked rows carry the most information summed: the single best row would be where
    every head left behind agrees against the leader, a rare pattern where a good leader's own
    errors gather (kept heads of the tuning runs are right on 0.32-0.81 of such rows of 01, 02,
    03 and 23, on 0.93-1.00 where half the heads part from them), so a label there would weigh
    an error as a test of the leader's feature; a common pattern tests the feature against the
    others' where they part. Once one head holds `rule.check_from`, asks instead whether any
    head is the label's feature (`identification_query`). When the heads agree everywhere, or
    the posterior has put mass >= `decided` on one head, picks a random row
    (`rule.uninformative_gain`, `rule.decided`).
    """
    num_rows = probs.shape[1]
    asked = np.zeros(num_rows, bool)
    asked[list(revealed)] = True
    if asked.all():
        raise ValueError("every target row has been revealed already")
    gain = np.where(asked, -np.inf, information_gain(probs, posterior, rule.query_noise))
    best = gain.max()
    if best < rule.uninformative_gain or posterior.max() >= rule.decided:
        return int(rng.choice(np.flatnonzero(~asked)))
    if posterior.max() >= rule.check_from:
        return identification_query(probs, posterior, revealed, rng, rule)
    patterns = disagreement_pattern(probs, posterior)
    if posterior.max() >= rule.pattern_from:
        summed = np.bincount(patterns, weights=np.where(asked, 0.0, gain))
        others = patterns != np.argmax(summed)
        # the chosen pattern first, then largest gain, then lowest row
        return int(np.lexsort((np.arange(num_rows), -gain, others))[0])
    counts = np.bincount(patterns[asked], minlength=patterns.max() + 1)[patterns]
    near = gain >= best - rule.near_best_gain
    # lexicographic: fewest earlier queries of the pattern, then largest gain, then lowest row
    order = np.lexsort((np.arange(num_rows), -gain, counts, ~near))
    return int(order[0])


def identification_query(probs: np.ndarray, posterior: np.ndarray, revealed: dict[int, int],
                         rng: np.random.Generator, rule: Rule = DEFAULT_RULE) -> int:
    """A row whose label tells most whether any head is the label's feature at all.

    The expected information about that question (`unidentified_weight`) between the heads'
    prediction (the posterior mixture, calibrated, with `rule.query_noise`) and the vote share:
    largest where the leading heads are sure and the others split. Only rows where every head
    that still matters (posterior >= 0.01) agrees, when such rows are at least half as
    informative as the best: the check tests them together and leaves the choice between them
    to the labels before it. Drawn at random among the rows at least `rule.check_ties` as
    informative as the best, so that the check is a sample of such rows, not the most extreme
    one.
    """
    num_classes = probs.shape[-1]
    asked = np.zeros(probs.shape[1], bool)
    asked[list(revealed)] = True
    weight = unidentified_weight(probs, revealed, rule)
    heads = np.einsum("h,hnc->nc", posterior, (1.0 - rule.query_noise) * probs
                      + rule.query_noise / num_classes)
    none = (1.0 - rule.query_noise) * vote_share(probs) + rule.query_noise / num_classes
    gain = (_entropy(weight * none + (1.0 - weight) * heads)
            - weight * _entropy(none) - (1.0 - weight) * _entropy(heads))
    gain = np.where(asked, -np.inf, gain)
    alive = alive_predictions(probs, posterior)
    agreed = np.where(np.all(alive == alive[:1], axis=0), gain, -np.inf)
    if agreed.max() >= 0.5 * gain.max():
        gain = agreed
    return int(rng.choice(np.flatnonzero(gain >= rule.check_ties * gain.max())))


def choose_head(posterior: np.ndarray) -> int:
    """The head kept: the one with the largest posterior (lowest index on ties)."""
    return int(np.argmax(posterior))


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Expected target accuracy of a prediction, with an interval."""
    accuracy: float
    low: float
    high: float
    label_errors: int  # revealed labels that the prediction gets wrong
    num_labels: int
    exact_weight: float = 0.0  # posterior weight of the "exact" reading
    unidentified: float = 0.0  # posterior probability that no head is the label's feature
    source: str = "target labels"  # or "held-out labeled rows" (an unshifted target)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """An unshifted target's stand-in (`shift.detect_shift`): an ERM member trained on half the
    labeled rows got `correct` of the other `rows` right. It speaks for the plain ERM `heads`."""
    correct: int
    rows: int
    heads: tuple[int, ...]


def label_errors(kept: np.ndarray, revealed: dict[int, int]) -> int:
    """How many revealed labels the prediction `kept.argmax(-1)` gets wrong."""
    return int(sum(int(kept[row].argmax()) != label for row, label in revealed.items()))


def vote_share(probs: np.ndarray) -> np.ndarray:
    """[N, C] share of the heads predicting each class at each row: the label's distribution
    when no head is the label's feature."""
    return hard(probs).mean(axis=0)


def unidentified_weight(probs: np.ndarray, revealed: dict[int, int],
                        rule: Rule = DEFAULT_RULE,
                        feature_held_out: tuple[HeldOut, ...] = ()) -> float:
    """Posterior probability that no head is the label's feature, against "one head is".

    The heads' hypothesis: a head drawn evenly, its probabilities in each of `readings` (as in
    `estimate_accuracy`), the labels following it up to a noise rate eps marginalised over its
    Beta prior (`noise_posterior`). The other: each label is the class of a head drawn at
    random per row (`vote_share`), up to `rule.query_noise`. Prior `rule.unidentified_prior`.
    A head whose feature was measured on held-out labeled rows (`feature_held_out`) has one
    more reading, weighed half against the others together: right at the measured rate a on
    every row, wrong evenly otherwise (a ~ the measure's Beta posterior).
    The measure is a random sample's; the labels land where the heads disagree, where even a
    head that held-out rows call perfect makes its rare errors (05, seed 23: 567 of 567 right,
    0.98 on the target), so it adds a reading rather than replacing the head's own.
    """
    if rule.unidentified_prior <= 0.0:
        return 0.0
    num_heads, _, num_classes = probs.shape
    rows = np.fromiter(revealed.keys(), int, count=len(revealed))
    labels = np.fromiter(revealed.values(), int, count=len(revealed))
    measured = {head: found for found in feature_held_out for head in found.heads}
    asked = np.arange(len(rows))
    heads_readings = readings(rule, probs[:, rows])  # [H, K, C] each: the labeled rows only
    log_heads = []
    for h in range(num_heads):
        log_head = _logsumexp(np.array([
            np.log(prior) + noise_posterior(reading[h, asked, labels], num_classes, rule)[2]
            for _, prior, (reading,) in heads_readings]))
        if h in measured:
            rate, weight = _beta_grid(measured[h])
            right = probs[h, rows].argmax(-1) == labels
            log_likelihood = np.where(right[None], np.log(rate)[:, None],
                                      np.log1p(-rate)[:, None] - np.log(num_classes - 1)).sum(1)
            log_head = _logsumexp(np.array([log_head, _logsumexp(
                np.log(weight + 1e-300) + log_likelihood)])) - np.log(2.0)
        log_heads.append(log_head)
    log_heads = _logsumexp(np.array(log_heads)) - np.log(num_heads)
    share = vote_share(probs)[rows, labels]
    log_none = float(np.log((1.0 - rule.query_noise) * share
                            + rule.query_noise / num_classes).sum())
    log_odds = (log_heads - log_none + np.log1p(-rule.unidentified_prior)
                - np.log(rule.unidentified_prior))
    return float(1.0 / (1.0 + np.exp(np.clip(log_odds, -700.0, 700.0))))


def held_out_estimate(held_out: HeldOut, kept: np.ndarray, revealed: dict[int, int],
                      rule: Rule = DEFAULT_RULE) -> Estimate:
    """Accuracy of an ERM head on a target drawn like the labeled rows: what the held-out
    rows' Beta(1 + right, 1 + wrong) rate realises on the target rows (`_realised`). The
    revealed labels, asked where the heads disagree, are no fair sample of the target."""
    accuracy, low, high = _mean_and_interval(*_realised(held_out, len(kept)), rule.interval)
    return Estimate(accuracy=accuracy, low=low, high=high,
                    label_errors=label_errors(kept, revealed), num_labels=len(revealed),
                    source="held-out labeled rows")


def _beta_grid(held_out: HeldOut, grid: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """The Beta(1 + right, 1 + wrong) posterior of an accuracy measured on held-out rows, as
    (values [G], masses [G] summing to 1)."""
    values = (np.arange(grid) + 0.5) / grid
    wrong = held_out.rows - held_out.correct
    log_density = held_out.correct * np.log(values) + wrong * np.log1p(-values)
    weight = np.exp(log_density - log_density.max())
    return values, weight / weight.sum()


def _realised(held_out: HeldOut, target_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The accuracy that a prediction right at the held-out measure's rate realises on
    `target_rows` rows: k / N with k Beta-binomial(N, 1 + right, 1 + wrong), as (values
    [N + 1], masses). What is scored is the realised accuracy, not the rate: on 381 rows (12) a
    rate of 0.995 realises 0.995 +- 0.004, as wide as the rate's own posterior."""
    a, b = held_out.correct + 1.0, held_out.rows - held_out.correct + 1.0
    k = np.arange(target_rows + 1)
    lgamma = np.vectorize(math.lgamma)
    log_mass = (lgamma(k + a) + lgamma(target_rows - k + b) - lgamma(k + 1.0)
                - lgamma(target_rows - k + 1.0))
    mass = np.exp(log_mass - log_mass.max())
    return k / target_rows, mass / mass.sum()


def estimate_accuracy(probs: np.ndarray, posterior: np.ndarray, kept: np.ndarray,
                      revealed: dict[int, int], rule: Rule = DEFAULT_RULE,
                      feature_held_out: tuple[HeldOut, ...] = (),
                      kept_head: int | None = None) -> Estimate:
    """Expected accuracy of the kept prediction `kept.argmax(-1)` on the target set.

    If a head is the label's feature: under each reading of the probabilities (`readings` of
    `probs` and `kept`: calibrated at each temperature; exact: their hard predictions),
    A(eps) = mean_x [a(x) - eps d(x) (a(x) - 1 / C)] with a(x) = sum_h w_h p_h(pred(x) | x):
    the posterior mixture of heads says how likely each prediction is; eps, the rate at which
    the truth departs from the right head on the rows some head disputes (d(x) = 1, where the
    labels land), has the posterior of `noise_posterior` given the kept reading's probabilities
    of the revealed labels. The readings are weighed by the evidence of those labels. If no head
    is (probability `unidentified_weight`): its agreement with a head drawn at random (mean: its
    vote share). Where the kept head's feature was measured on held-out labeled rows
    (`feature_held_out`, as the feature blocks do), its hypothesis scores the accuracy that
    measure realises on the target rows instead (`_realised`), and the other heads' share the
    probability readings.
    The estimate is the mean of the mixture and the interval its quantiles.

    Args:
      probs: [H, N, C] heads' probabilities on the target rows.
      posterior: [H] weights of the heads.
      kept: [N, C] probabilities behind the predictions to be submitted (the kept head's).
      revealed: row -> class index.
      rule: the noise prior, the exact reading's prior weight (0 trusts the probabilities as
        given), the prior that no head is the label's feature and the interval's mass.
      feature_held_out: heads' features measured on held-out labeled rows, each valid under
        the hypotheses of its `heads` (they see inputs distributed alike on both sides).
      kept_head: the head whose predictions are `kept`, if one is.
    """
    own_weight, own_grid = 0.0, (np.zeros(0), np.zeros(0))
    held_out = next((found for found in feature_held_out if kept_head in found.heads), None)
    if held_out is not None:
        own = np.isin(np.arange(len(posterior)), held_out.heads)
        own_weight, own_grid = float(posterior[own].sum()), _realised(held_out, len(kept))
        others = np.where(own, 0.0, posterior)
        posterior = others / max(others.sum(), 1e-300)
    num_classes = probs.shape[-1]
    num_labels = len(revealed)
    rows = np.fromiter(revealed.keys(), int, count=num_labels)
    labels = np.fromiter(revealed.values(), int, count=num_labels)
    predictions = kept.argmax(-1)
    matches = probs.argmax(-1) == predictions[None]  # [H, N] heads predicting the same class
    disputed = ~matches.all(axis=0)  # [N]

    grids = {}  # reading -> (log prior + log evidence, accuracy [G] over eps, eps weights [G])
    for name, prior, (heads, kept_reading) in readings(rule, probs, kept):
        eps, weights, log_evidence = noise_posterior(kept_reading[rows, labels], num_classes,
                                                      rule)
        picked = np.take_along_axis(heads, predictions[None, :, None], axis=-1)[..., 0]
        agreement = np.einsum("h,hn->n", posterior, picked)  # [N]
        # the noise departs from the right head where the heads dispute the prediction
        at_stake = float(np.mean(disputed * (agreement - 1.0 / num_classes)))
        grids[name] = (np.log(prior) + log_evidence, agreement.mean() - eps * at_stake,
                       weights)
    log_odds = np.array([grid[0] for grid in grids.values()])
    reading_weight = dict(zip(grids, np.exp(log_odds - _logsumexp(log_odds))))
    unidentified = unidentified_weight(probs, revealed, rule, feature_held_out)
    # No head the label's feature: the labels follow a head drawn at random, so the prediction
    # scores its agreement with that head (mean: its vote share).
    agreements = matches.mean(axis=1)  # [H]
    accuracy = np.concatenate([grid[1] for grid in grids.values()] + [own_grid[0], agreements])
    identified = 1.0 - unidentified
    weight = np.concatenate([identified * (1.0 - own_weight) * reading_weight[name] * grid[2]
                             for name, grid in grids.items()]
                            + [identified * own_weight * own_grid[1],
                               np.full(len(agreements), unidentified / len(agreements))])
    mean, low, high = _mean_and_interval(accuracy, weight, rule.interval)
    return Estimate(accuracy=mean, low=low, high=high,
                    label_errors=label_errors(kept, revealed), num_labels=num_labels,
                    exact_weight=float(reading_weight.get("exact", 0.0)),
                    unidentified=unidentified,
                    source="target labels" + (", and held-out labeled rows for the kept head's "
                                              "block" if held_out is not None else ""))


def noise_posterior(label_probs: np.ndarray, num_classes: int, rule: Rule = DEFAULT_RULE,
                    grid: int = 20000):
    """eps's posterior given the kept head's probabilities `label_probs` [K] of the revealed
    labels: Beta prior (mean `rule.prior_noise`, `rule.prior_strength` pseudo-labels) times
    prod_k [(1 - eps) q_k + eps / C], on a grid that is geometric near 0 (the prior's density
    is infinite there); each cell gets its exact prior mass in the x^(a-1) factor.

    Returns:
      (eps [G], weights [G], log_evidence): cell midpoints, posterior masses summing to 1 (no
      scipy), and the log marginal likelihood of the labels, log E_prior[prod_k ...].
    """
    a = rule.prior_noise * rule.prior_strength
    b = (1.0 - rule.prior_noise) * rule.prior_strength
    edges = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, grid)])
    mid = 0.5 * (edges[1:] + edges[:-1])
    log_prior = (np.log(edges[1:] ** a - edges[:-1] ** a) - np.log(a)
                 + (b - 1.0) * np.log1p(-np.minimum(mid, 1.0 - 1e-12)))
    log_prior = log_prior - _logsumexp(log_prior)
    likelihood = (1.0 - mid)[:, None] * label_probs[None, :] + mid[:, None] / num_classes
    log_mass = log_prior + np.log(likelihood).sum(axis=1)
    log_evidence = _logsumexp(log_mass)
    return mid, np.exp(log_mass - log_evidence), float(log_evidence)


def _mean_and_interval(values: np.ndarray, weights: np.ndarray, interval: float):
    """(mean, low, high) of a discrete distribution [G] summing to 1; low and high are the
    quantiles that leave at most (1 - interval) / 2 out on each side: values it takes, so that
    an atom (a realised accuracy of 1 on a small target) is inside when it holds the mass."""
    order = np.argsort(values)
    tail = (1.0 - interval) / 2.0
    cumulative = np.cumsum(weights[order])
    low, high = values[order][np.minimum(np.searchsorted(cumulative, [tail, 1.0 - tail]),
                                         len(values) - 1)]
    return float(np.dot(values, weights)), float(low), float(high)


def _logsumexp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum()))


@dataclasses.dataclass(frozen=True)
class Decision:
    submit: bool
    reason: str


def decide(estimate: Estimate, default_score: float, rule: Rule = DEFAULT_RULE) -> Decision:
    """Submit when the estimate's mean beats the set's default score by more than
    `rule.margin`: the score is linear in the accuracy, so with margin 0 this maximises the
    expected score. The same rule for every data set."""
    said = (f"estimated accuracy {estimate.accuracy:.3f} ({rule.interval:.0%} interval "
            f"{estimate.low:.3f}-{estimate.high:.3f}, from the {estimate.source}")
    if estimate.source.startswith("target labels"):
        said += f"; P(no head is the label) {estimate.unidentified:.2f}"
    bar = f"the default {default_score:.2f}" + (f" + margin {rule.margin:.2f}"
                                                 if rule.margin else "")
    if estimate.accuracy > default_score + rule.margin:
        return Decision(True, f"{said}) beats {bar}")
    return Decision(False, f"{said}) does not beat {bar}")


def conclude(probs: np.ndarray, posterior: np.ndarray, revealed: dict[int, int],
             default_score: float, rule: Rule = DEFAULT_RULE,
             held_out: HeldOut | None = None,
             feature_held_out: tuple[HeldOut, ...] = ()) -> tuple[int, Estimate, Decision]:
    """The end of the label loop: the kept head, its estimated accuracy and the decision.

    With `held_out` (the target is drawn like the labeled rows), the ERM anchor is kept (the one
    of largest posterior if several) and estimated from the held-out labeled rows. Any head h
    scores acc_h <= 1 - disagree(h, anchor) + (1 - acc_anchor), so a pushed head, made to
    disagree with the anchor on target rows that look like the labeled ones, is worse; the five
    labels, asked where the heads disagree, land on the anchor's rare errors (set 13: the
    backdoored rows) and would otherwise pick a worse head.

    `feature_held_out` holds, for heads that see one block of inputs (`blocks`), their feature's
    accuracy on held-out labeled rows; it says how often the truth departs from those heads in
    the estimate.
    """
    if held_out is not None and held_out.heads:
        anchors = np.asarray(held_out.heads)
        head = int(anchors[np.argmax(posterior[anchors])])
        estimate = held_out_estimate(held_out, probs[head], revealed, rule)
    else:
        head = choose_head(posterior)
        estimate = estimate_accuracy(probs, posterior, probs[head], revealed, rule,
                                     feature_held_out, head)
    return head, estimate, decide(estimate, default_score, rule)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What the label loop asked and concluded. Labels are class indices."""
    queries: list[tuple[int, int]]  # (target row, class index) in the order asked
    posteriors: list[np.ndarray]  # [H] before any label, after the known ones, after each new
    chosen_head: int
    estimate: Estimate
    decision: Decision


def resolve(probs: np.ndarray, ask: Callable[[int], int | None], budget: int,
            rng: np.random.Generator, default_score: float, rule: Rule = DEFAULT_RULE,
            known: dict[int, int] | None = None, held_out: HeldOut | None = None,
            on_label: Callable[[int, int, int, np.ndarray], None] | None = None,
            feature_held_out: tuple[HeldOut, ...] = ()) -> Resolution:
    """The label loop: spends up to `budget` labels where they teach most about which head is
    right, then keeps a head, estimates its accuracy and decides whether to submit.

    Args:
      probs: [H, N, C] the heads' calibrated probabilities on the target rows.
      ask: row -> its class index, or None when no label can be had any more (the only side
        effect; the pipeline's asks the oracle, the replay's reads hidden labels).
      budget: labels in all, `known` ones included.
      rng: draws the random rows (`select_query`).
      default_score: what abstaining scores on this set.
      rule: the decision rule.
      known: labels already held (a crashed run's, from the ledger): used first, never re-asked.
      held_out: the shift test's stand-in when the target is not shifted (`conclude`).
      on_label: called after each new label with (labels held, row, class index, posterior).
      feature_held_out: the block heads' features on held-out labeled rows (`conclude`).
    """
    revealed = dict(known or {})
    posteriors = [head_posterior(probs, {}, rule.query_noise)]
    if revealed:
        posteriors.append(head_posterior(probs, revealed, rule.query_noise))
    while len(revealed) < min(budget, probs.shape[1]):
        row = select_query(probs, posteriors[-1], revealed, rng, rule)
        label = ask(row)
        if label is None:
            break
        revealed[row] = int(label)
        posteriors.append(head_posterior(probs, revealed, rule.query_noise))
        if on_label is not None:
            on_label(len(revealed), row, int(label), posteriors[-1])
    head, estimate, decision = conclude(probs, posteriors[-1], revealed, default_score, rule,
                                        held_out, feature_held_out)
    return Resolution(queries=list(revealed.items()), posteriors=posteriors, chosen_head=head,
                      estimate=estimate, decision=decision)
