"""Two blocks of input features that each explain the labels: found on the data, tested, kept
apart in the joint pair of heads.

Where a set's two features live in different input features (the left and right digits' pixels,
the 2-D toy's two coordinates, the halves of a colour image), the labeled rows make the two
blocks depend on each other (both follow the label) and the target does not (there the features
are independent). That dependence, which vanishes on the target, is what splits them: with
correlations C_l on the labeled rows and C_t on the target, D = |C_l| - |C_t| is large between
features of different blocks and about 0 within a block, so the split is the maximum cut of D
(the sign of its lowest eigenvector, then single moves that raise the cut). Single inputs that
carry little (888's trunk features) leave the cut noisy, so one regrouping follows: an ERM head
is trained on each block, and each input joins the block whose head's target predictions it
correlates with most.

A split is a hypothesis, tested before it is used: one ERM head is trained on each block alone,
and the blocks are two explanations of the labels only if those heads agree on the labeled rows
(Cohen's kappa above `AGREEING_KAPPA`: each block explains the labels) and predict the target
nearly independently (kappa below `INDEPENDENT_KAPPA`).
Then the hybrid's joint DivDis pair sees one block each. Why: a head that sees every feature
can mix the two features, and when each explains the labeled rows imperfectly (888's halves,
about 90%), the labeled loss pays it to (the mixture fits both views); on the toy set it tilts
the boundary between them. A head that sees one block can only be that block's feature.
Where each input feature carries both features (the embeddings of 23 and 456, the summed digits
of 06-08) the block heads read the same mixture, agree on the target, and nothing changes.

A split can pass and still leak: where each input weighs both features (a linear embedding's
components), no cut separates them, and a head that sees one block misses what of its feature
the other block holds. The test measures that (`leaks`: a member on the other block foretelling
each block head's target classes); where it is at least moderate (`BlockTest.leaky`), the joint
pair stands for its two students, which see every input (`Config.block_students`,
`refinement.with_pair_students`).

A block's inputs are distributed alike on the labeled rows and the target (the shift is in how
the two blocks go together), so if the label is the feature of a block, held-out labeled rows
are a fair sample of the target for a head that sees that block alone. Where the blocks pass,
one more member per block learns from half the labeled rows and is scored on the other half:
the estimate reads that as the accuracy of a pair head under the hypothesis that it is the
label's feature (`held_outs`), where its own probabilities are over-confident (888: 0.94
expected at a true 0.88).

Shapes: N rows, S the input's shape, F = prod(S) features.
"""

import dataclasses
import time

import jax
import numpy as np

from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets.loader import Dataset
from ambig_jax.disambiguation import HeldOut

# Cut points of Landis & Koch's scale of agreement (1977), not fitted to these sets:
INDEPENDENT_KAPPA = 0.2  # at most "slight" agreement on the target
AGREEING_KAPPA = 0.6  # at least "substantial" agreement on the labeled rows
LEAKING_KAPPA = 0.4  # at least "moderate": the other block foretells a block's feature (`leaks`)
MOST_FEATURES = 2048  # inputs wider than this are not split (D alone would be F^2 floats)


def _z_scores(x: np.ndarray) -> np.ndarray:
    """[N, F] float64 columns of x [N, *S] with mean 0 and standard deviation 1; constant
    columns are 0 (they correlate with nothing)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    return x / np.where(std > 1e-6, std, np.inf)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[F, G] correlation of the columns of a [N, *S] with those of b [N, *T]."""
    return _z_scores(a).T @ _z_scores(b) / len(a)


def vanishing_dependence(x_labeled: np.ndarray, x_target: np.ndarray) -> np.ndarray:
    """[F, F] D = |corr| on the labeled rows - |corr| on the target, with a zero diagonal.
    Correlations do not depend on an input's centre or scale, so raw rows do."""
    dependence = (np.abs(_correlation(x_labeled, x_labeled))
                  - np.abs(_correlation(x_target, x_target)))
    np.fill_diagonal(dependence, 0.0)
    return dependence


def max_cut(weights: np.ndarray, most_moves: int | None = None) -> np.ndarray:
    """[F] bool sides of a cut of large total weight across it, for symmetric `weights` [F, F]
    with a zero diagonal: the signs of the eigenvector of the lowest eigenvalue, then the best
    single move while one raises the cut (at most `most_moves`, default F)."""
    _, vectors = np.linalg.eigh(weights)
    sides = np.where(vectors[:, 0] >= 0, 1.0, -1.0)
    pull = weights @ sides  # moving feature i across raises the cut by 2 * sides_i * pull_i
    for _ in range(len(sides) if most_moves is None else most_moves):
        i = int(np.argmax(sides * pull))
        if sides[i] * pull[i] <= 1e-12:
            break
        pull -= 2.0 * sides[i] * weights[:, i]
        sides[i] = -sides[i]
    return sides > 0


def split_features(x_labeled: np.ndarray, x_target: np.ndarray) -> np.ndarray:
    """[*S] bool: the block each input feature is in (True: the first)."""
    return max_cut(vanishing_dependence(x_labeled, x_target)).reshape(x_labeled.shape[1:])


def regroup(x_target: np.ndarray, head_probs: np.ndarray) -> np.ndarray:
    """[*S] bool: each input feature put with the block head [2, N, C] whose target
    probabilities it correlates with most (largest |corr| over the classes). On the target the
    two features are independent, so an input that carries one of them correlates with that
    feature's head only, whichever side the cut first put it on."""
    relevance = [np.abs(_correlation(x_target, probs)).max(axis=1) for probs in head_probs]
    return (relevance[0] >= relevance[1]).reshape(x_target.shape[1:])


def cohen_kappa(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """Agreement of two label vectors beyond what their class frequencies give by chance."""
    observed = float(np.mean(a == b))
    chance = float(sum(np.mean(a == c) * np.mean(b == c) for c in range(num_classes)))
    return 0.0 if chance >= 1.0 else (observed - chance) / (1.0 - chance)


@dataclasses.dataclass(frozen=True)
class BlockTest:
    """The split and its test."""
    block: np.ndarray  # [*S] bool: features of the first block
    kappa: float  # the two block heads' agreement on the target beyond chance
    labeled_kappa: float  # and on the labeled rows
    seconds: float
    # when independent: each block's member trained on half the labeled rows, its hits on the
    # other half (`held_out_rows` rows)
    held_out_correct: tuple[int, ...] = ()
    held_out_rows: int = 0
    # each block head's share of target rows in each class: its feature's class balance there
    target_balance: tuple[tuple[float, ...], ...] = ()
    # when independent: how much of each block head's feature the other block carries on the
    # target (`leaks`)
    leaks: tuple[float, ...] = ()

    @property
    def independent(self) -> bool:
        """The blocks are two explanations of the labels: their heads agree on the labeled rows
        and not on the target."""
        return self.labeled_kappa > AGREEING_KAPPA and self.kappa < INDEPENDENT_KAPPA

    @property
    def leaky(self) -> bool:
        """Independent blocks one of whose features the other block foretells at least at
        moderate agreement (`leaks`): a head that sees one block misses part of its feature."""
        return self.independent and max(self.leaks, default=0.0) >= LEAKING_KAPPA

    def describe(self) -> str:
        sizes = f"{int(self.block.sum())} + {int((~self.block).sum())} features"
        verdict = ("two explanations: the joint pair sees one block each" if self.independent
                   else "not independent: the heads see every feature")
        held_out = ""
        if self.held_out_correct:
            held_out = (f"; trained on half the labeled rows, they get "
                        f"{' and '.join(map(str, self.held_out_correct))} of the other "
                        f"{self.held_out_rows} right")
        balance = ""
        if self.independent and self.target_balance:
            balance = ("; their class shares on the target " + " and ".join(
                "/".join(f"{share:.2f}" for share in head) for head in self.target_balance))
        leaks = ""
        if self.leaks:
            leaks = (f"; the other block foretells each head's target classes at kappa "
                     f"{' and '.join(f'{k:.2f}' for k in self.leaks)}"
                     f"{': leaky' if self.leaky else ''}")
        return (f"blocks of {sizes}, their heads' kappa {self.labeled_kappa:.2f} on the labeled "
                f"rows, {self.kappa:.2f} on the target: {verdict}{held_out}{balance}{leaks}")

    def head_masks(self, config: Config) -> np.ndarray | None:
        """[H, *S] float32 input masks: the joint pair's two heads see one block each, every
        other head all features; None when the blocks are not independent or the strategy
        has no joint pair."""
        pair = training.joint_pair(config)
        if not self.independent or pair is None:
            return None
        masks = np.ones((config.num_heads,) + self.block.shape, np.float32)
        masks[pair[0]], masks[pair[1]] = self.block, ~self.block
        return masks

    def head_priors(self, config: Config, dataset: Dataset) -> np.ndarray | None:
        """[H, C] the class balance each head's prior term holds its target predictions to
        (`training.train`'s `priors`): the joint pair's heads, which see one block each, their
        block head's balance on the target; every other head the labeled rows'. None where
        `head_masks` is None.

        The labeled rows' balance is the label's, and a target drawn with another balance
        (label shift) would cost a pair head that holds to it the rows between the two
        balances: 01, seed 7: labeled 0.455 / 0.545, target 0.497 / 0.503, block head on the
        target 0.497 / 0.503 (docs/head-search.md)."""
        if self.head_masks(config) is None or not self.target_balance:
            return None
        priors = np.tile(training.labeled_prior(dataset), (config.num_heads, 1))
        priors[list(training.joint_pair(config))] = self.target_balance
        return priors

    def held_outs(self, config: Config) -> tuple[HeldOut, ...]:
        """Each joint-pair head's feature measured on held-out labeled rows: what its block's
        member got right (`HeldOut.heads` names the head); () where `head_masks` is None."""
        pair = training.joint_pair(config)
        if self.head_masks(config) is None or not self.held_out_correct:
            return ()
        return tuple(HeldOut(correct=correct, rows=self.held_out_rows, heads=(head,))
                     for head, correct in zip(pair, self.held_out_correct))


def feature_held_out(found: BlockTest | None, config: Config) -> tuple[HeldOut, ...]:
    """What the label loop reads of a run's test (`disambiguation.resolve`'s
    `feature_held_out`): the pair heads' measures, or () without a test, with blocks that did
    not pass, or with `config.rule.block_held_out` off."""
    if found is None or not config.rule.block_held_out:
        return ()
    return found.held_outs(config)


def shows_shift(found: BlockTest | None) -> bool:
    """Whether the test shows the target shifted: blocks that passed depend on each other on the
    labeled rows (both follow the label) and not on the target, which no target drawn like the
    labeled rows allows. The shift test can miss such a shift (888, seed 35: z 2.3 at 1500
    steps, where the blocks' kappa was 0.89 on the labeled rows and 0.03 on the target), so a
    pass overrides its "not shifted"."""
    return found is not None and found.independent


def kept_block(masks: np.ndarray | None, predictions: np.ndarray, head: int,
               num_classes: int) -> np.ndarray | None:
    """[*S] the input mask of the block whose feature the kept `head` follows, or None (every
    input). A head that sees one block follows that block's. Where the blocks passed, the two
    explanations of the labels are the blocks' features, so a head that sees every input and
    agrees with one block's head on the target at least as the test asks two explanations to
    agree on the labeled rows (kappa above `AGREEING_KAPPA`) follows that block's feature too
    (02: a chain head at 0.98 agreeing with a pair head on 97-99% of the target); one that
    agrees with neither so (03: 0.71-0.74) is left as it is.

    Args:
      masks: [H, *S] the heads' input masks (`BlockTest.head_masks`), None without blocks.
      predictions: [H, N] the heads' classes on the target rows.
      head: the kept head.
      num_classes: C.
    """
    if masks is None:
        return None
    seeing = [h for h in range(len(masks)) if not masks[h].all()]
    followed = followed_head(predictions, head, seeing, num_classes)
    return None if followed is None else masks[followed]


def followed_head(predictions: np.ndarray, head: int, candidates, num_classes: int
                  ) -> int | None:
    """The head among `candidates` whose feature `head` follows: itself if it is one, else the
    one it agrees with most on the target if that is at least as the test asks two
    explanations to agree on the labeled rows (kappa above `AGREEING_KAPPA`), else None.

    Args:
      predictions: [H, N] the heads' classes on the target rows.
      head: the kept head.
      candidates: heads that each read one feature (the joint pair's, where the blocks passed).
      num_classes: C.
    """
    candidates = list(candidates)
    if head in candidates:
        return head
    kappas = [cohen_kappa(predictions[head], predictions[h], num_classes) for h in candidates]
    if not kappas or max(kappas) <= AGREEING_KAPPA:
        return None
    return candidates[int(np.argmax(kappas))]


def applies(config: Config, dataset: Dataset) -> bool:
    """Whether the test runs: `config.feature_blocks` is on, the strategy has a joint pair and
    the input has 2 to `MOST_FEATURES` features."""
    features = int(np.prod(dataset.input_shape))
    return (config.feature_blocks and training.joint_pair(config) is not None
            and 2 <= features <= MOST_FEATURES)


def leaks(config: Config, dataset: Dataset, block: np.ndarray, classes: np.ndarray,
          key: jax.Array) -> tuple[float, float]:
    """How much of each block head's feature the other block carries on the target: for block
    b, one ERM member that sees the other block learns b's head's classes on half the target
    rows, and its agreement with them on the other half (Cohen's kappa) is b's leak.

    On the target the two features are independent, so where each block holds one feature
    only, the other block cannot foretell it (kappa about 0: the toy set's two coordinates,
    01's two digits; at most 0.29 on 02 and 05, whose blocks hold a few hundred pixels of the
    other half). Where inputs weigh both features (a linear embedding's components: 0.32-0.64
    on 23 and 456's `pca` family; 03's halves, each the digit or the picture row by row: up
    to 0.55), no cut separates them, and a head that sees one block misses the part of its
    feature that the other holds (docs/head-search.md).

    Args:
      config: the run's configuration (steps, backbone).
      dataset: the (encoded) data set; its target labels are never read.
      block: [*S] bool, the first block.
      classes: [2, N] each block head's classes on the target rows.
      key: PRNG key of the members and of the halves.
    """
    half = training.numpy_rng(key).permutation(len(dataset.x_target)) % 2 == 0
    kappas = []
    for b, other in enumerate((~block, block)):
        member = training.train_member(config, dataset, dataset.x_target[half], classes[b][half],
                                       jax.random.fold_in(key, b),
                                       desc=f"[{dataset.name}] block {b + 1}'s leak",
                                       masks=other[None].astype(np.float32))
        foretold = member.predict_proba(dataset.x_target[~half])[0].argmax(-1)
        kappas.append(cohen_kappa(foretold, classes[b][~half], dataset.num_classes))
    return tuple(kappas)


def test_blocks(config: Config, dataset: Dataset, key: jax.Array) -> BlockTest:
    """Splits the inputs into two blocks and trains one ERM head on each (two
    members of one ensemble, with the run's steps); regroups the inputs by those heads
    (`regroup`) and trains the two heads again, which then predict the target and labeled rows.

    Args:
      config: the run's configuration (steps, backbone, ...).
      dataset: the (encoded) data set; its target labels are never read.
      key: PRNG key of the block heads.
    """
    start = time.perf_counter()

    def block_heads(block, rows=dataset):
        return training.train(config.replace(strategy="erm", num_heads=2), rows, key,
                              desc=f"[{dataset.name}] block heads",
                              masks=np.stack([block, ~block]).astype(np.float32))

    first = block_heads(split_features(dataset.x_labeled, dataset.x_target))
    # once: the cut is noisy where single inputs carry little (888's trunk features)
    block = regroup(dataset.x_target, first.predict_proba(dataset.x_target))
    heads = block_heads(block)
    kappas, target_probs = [], heads.predict_proba(dataset.x_target)
    for probs in (target_probs, heads.predict_proba(dataset.x_labeled)):
        predicted = probs.argmax(-1)
        kappas.append(cohen_kappa(predicted[0], predicted[1], dataset.num_classes))
    balance = tuple(tuple(float(np.mean(head == c)) for c in range(dataset.num_classes))
                    for head in target_probs.argmax(-1))
    found = BlockTest(block=block, kappa=kappas[0], labeled_kappa=kappas[1], seconds=0.0,
                      target_balance=balance)
    if found.independent:
        rng = training.numpy_rng(key)
        half = rng.permutation(len(dataset.y_labeled)) % 2 == 0
        heads = block_heads(block, dataclasses.replace(dataset, x_labeled=dataset.x_labeled[half],
                                                       y_labeled=dataset.y_labeled[half]))
        hits = heads.predict_proba(dataset.x_labeled[~half]).argmax(-1) == dataset.y_labeled[~half]
        found = dataclasses.replace(found, held_out_correct=tuple(int(h) for h in hits.sum(1)),
                                    held_out_rows=int((~half).sum()),
                                    leaks=leaks(config, dataset, block, target_probs.argmax(-1),
                                                jax.random.fold_in(key, 1)))
    return dataclasses.replace(found, seconds=time.perf_counter() - start)
