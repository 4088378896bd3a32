"""The feature blocks: the split, its test, and the joint pair's masks."""

import dataclasses

import jax
import numpy as np
import pytest

from ambig_jax import blocks
from ambig_jax import models
from ambig_jax import pipeline
from ambig_jax import serialization
from ambig_jax import training
from ambig_jax.config import PRESETS, Config
from ambig_jax.datasets import catalog
from ambig_jax.datasets import loader
from tests.conftest import generated

SMOKE = PRESETS["smoke"]


def two_feature_rows(rng, num_rows: int, agree: bool, mixed: bool, width: int = 6,
                     ones: float = 0.5, noise: float = 0.3, leak: bool = False):
    """Rows of 2 * width features. Block A's features are noisy copies of one class a, block
    B's of another class b; b = a on labeled rows (`agree`), independent on the target. With
    `mixed`, every feature carries a + b (no block holds one class alone). `ones`: the share
    of rows whose a is 1; `noise`: each feature's standard deviation around its class. With
    `leak`, the last feature of each block carries a - b, which weighs both classes and is 0
    where they agree (as a linear embedding's components weigh both digits)."""
    a = (rng.random(num_rows) < ones).astype(np.int64)
    b = a.copy() if agree else rng.integers(0, 2, num_rows)
    signal_a, signal_b = (a + b, a + b) if mixed else (a, b)
    x = np.concatenate([np.repeat(signal_a[:, None], width, 1),
                        np.repeat(signal_b[:, None], width, 1)], axis=1)
    if leak:
        x[:, [width - 1, 2 * width - 1]] = (a - b)[:, None]
    x = x + rng.normal(0, noise, (num_rows, 2 * width))
    return x.astype(np.float32), a


def two_feature_set(seed: int = 0, mixed: bool = False, leak: bool = False) -> loader.Dataset:
    rng = np.random.default_rng(seed)
    x_l, y_l = two_feature_rows(rng, 600, True, mixed, leak=leak)
    x_u, _ = two_feature_rows(rng, 300, False, mixed, leak=leak)
    x_t, _ = two_feature_rows(rng, 600, False, mixed, leak=leak)
    return loader.from_arrays(catalog.CATALOG[0], x_l, y_l, x_u, x_t)


def test_max_cut_separates_two_blocks():
    weights = np.zeros((6, 6))
    weights[:3, 3:] = weights[3:, :3] = 1.0  # all the weight lies across {0, 1, 2} | {3, 4, 5}
    weights += 0.05 * np.eye(6)[::-1]  # a little inside-block noise off the diagonal
    np.fill_diagonal(weights, 0.0)
    sides = blocks.max_cut(weights)
    assert len(set(sides[:3])) == 1 and len(set(sides[3:])) == 1 and sides[0] != sides[3]


def test_max_cut_moves_a_misplaced_feature():
    weights = np.ones((4, 4)) - np.eye(4)
    weights[0, 1] = weights[1, 0] = weights[2, 3] = weights[3, 2] = -1.0  # 0, 1 and 2, 3 together
    sides = blocks.max_cut(weights)
    assert sides[0] == sides[1] and sides[2] == sides[3] and sides[0] != sides[2]


def test_split_follows_the_dependence_that_vanishes_on_the_target():
    rng = np.random.default_rng(1)
    x_l, _ = two_feature_rows(rng, 2000, True, False)
    x_t, _ = two_feature_rows(rng, 2000, False, False)
    block = blocks.split_features(x_l, x_t)
    assert block.shape == (12,)
    assert len(set(block[:6])) == 1 and len(set(block[6:])) == 1 and block[0] != block[6]
    dependence = blocks.vanishing_dependence(x_l, x_t)
    assert np.all(np.diag(dependence) == 0)
    assert dependence[0, 6] > 0.5 and abs(dependence[0, 1]) < 0.1  # across vs within a block


def test_regroup_puts_each_input_with_the_head_it_follows():
    rng = np.random.default_rng(2)
    x_t, a = two_feature_rows(rng, 2000, False, False)
    b = np.round(x_t[:, 6:].mean(axis=1)).clip(0, 1).astype(int)  # block B's class
    heads = np.stack([np.eye(2)[a] * 0.8 + 0.1, np.eye(2)[b] * 0.8 + 0.1])  # [2, N, C]
    block = blocks.regroup(x_t, heads)
    np.testing.assert_array_equal(block, [True] * 6 + [False] * 6)
    np.testing.assert_array_equal(blocks.regroup(x_t, heads[::-1]), ~block)


def test_cohen_kappa():
    a = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    assert blocks.cohen_kappa(a, a, 2) == pytest.approx(1.0)
    assert blocks.cohen_kappa(a, 1 - a, 2) == pytest.approx(-1.0)
    # 3 of 4 agree, both split 50/50: (0.75 - 0.5) / (1 - 0.5)
    assert blocks.cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == \
        pytest.approx((0.75 - 0.5) / (1 - 0.5))
    assert blocks.cohen_kappa(np.zeros(4, int), np.zeros(4, int), 2) == 0.0  # no chance to beat


def test_two_blocks_pass_the_test_and_mask_the_joint_pair():
    dataset = two_feature_set()
    test = blocks.test_blocks(SMOKE, dataset, jax.random.key(0))
    assert test.independent, test.describe()
    assert test.labeled_kappa > 0.9 and abs(test.kappa) < 0.1
    # each block's member, trained on half the labeled rows, gets the other half right
    assert test.held_out_rows == 300 and min(test.held_out_correct) > 290, test.describe()
    held_outs = test.held_outs(SMOKE)
    assert [h.heads for h in held_outs] == [(p,) for p in training.joint_pair(SMOKE)]
    assert "of the other 300 right" in test.describe()
    masks = test.head_masks(SMOKE)
    assert masks.shape == (SMOKE.num_heads, 12)
    first, second = training.joint_pair(SMOKE)
    np.testing.assert_array_equal(masks[first] + masks[second], np.ones(12))
    assert masks[first].sum() == 6  # one block each
    np.testing.assert_array_equal(masks[:first], 1.0)  # the chain sees everything
    # the masked pair finds both features: one head follows a, the other b
    ensemble = training.train(SMOKE, dataset, jax.random.key(0), masks=masks)
    assert ensemble.masks is not None
    predicted = ensemble.predict_proba(dataset.x_target).argmax(-1)
    pair_kappa = blocks.cohen_kappa(predicted[first], predicted[second], 2)
    assert abs(pair_kappa) < 0.1


def test_blocks_that_each_carry_part_of_the_others_feature_leak():
    clean = blocks.test_blocks(SMOKE, two_feature_set(), jax.random.key(0))
    assert len(clean.leaks) == 2 and max(clean.leaks) < blocks.INDEPENDENT_KAPPA
    assert not clean.leaky and "leaky" not in clean.describe(), clean.describe()
    # inputs a - b: the block that holds one with a's inputs foretells b
    leaky = blocks.test_blocks(SMOKE, two_feature_set(leak=True), jax.random.key(0))
    assert leaky.independent and leaky.leaky, leaky.describe()
    assert max(leaky.leaks) > 0.8 and "leaky" in leaky.describe()
    # blocks that did not pass are not measured
    mixed = blocks.test_blocks(SMOKE, two_feature_set(mixed=True), jax.random.key(0))
    assert mixed.leaks == () and not mixed.leaky


def test_where_the_blocks_leak_the_pair_stands_for_students_that_see_every_input():
    dataset, key, lines = two_feature_set(leak=True), jax.random.key(0), []
    x = dataset.x_target
    plain, _ = pipeline.train_heads(SMOKE.replace(block_students=False), dataset, key,
                                    log=lambda _: None)
    ensemble, test = pipeline.train_heads(SMOKE, dataset, key, log=lines.append)
    assert test.leaky and plain.pair_students is None and ensemble.pair_students is not None
    assert any("the blocks leak" in line for line in lines)
    first, second = pair = training.joint_pair(SMOKE)
    before, probs = plain.predict_proba(x), ensemble.predict_proba(x)
    np.testing.assert_array_equal(probs[:first], before[:first])  # the chain as trained
    # each pair head: its student's classes, with its block head's probabilities (its doubt)
    students = ensemble.pair_students.predict_proba(x).argmax(-1)
    np.testing.assert_array_equal(probs[list(pair)].argmax(-1), students)
    np.testing.assert_allclose(np.sort(probs[list(pair)], -1), np.sort(before[list(pair)], -1))
    for head, student in zip(pair, students):  # each follows its block head
        assert np.mean(student == before[head].argmax(-1)) > 0.9
    # a student of a pair head sees every input and learns with the other pair head
    assert ensemble.student_masks is None and plain.student_masks is plain.masks
    assert (ensemble.complement(first), ensemble.complement(second)) == (second, first)
    assert ensemble.complement(0) is None and plain.complement(first) is None
    calibrated = ensemble.calibrated_proba(x)
    refined = pipeline.refine_head(SMOKE, dataset, ensemble, calibrated, second, {}, key,
                                   unshifted=False)
    # and, as the pair's students did, the labeled rows (where a = b) beside the other
    assert refined.with_complement and refined.labeled_rows == len(dataset.y_labeled)
    # so does a head that follows one of them (the anchor, which learned a = b)
    follows = blocks.followed_head(calibrated.argmax(-1), 0, pair, 2)
    assert follows in pair
    assert pipeline.refine_head(SMOKE, dataset, ensemble, calibrated, 0, {}, key,
                                unshifted=False).with_complement
    # blocks that do not leak keep their heads
    clean, _ = pipeline.train_heads(SMOKE, two_feature_set(), key, log=lambda _: None)
    assert clean.masks is not None and clean.pair_students is None


def test_the_pair_holds_its_blocks_balance_on_a_target_with_another():
    """Label shift: a is 1 on half the labeled rows and on 80% of the target, and its features
    are noisy enough that some rows are in doubt. The block heads measure each feature's
    balance on the target, and the pair heads that see one block each are held to it instead
    of the labeled rows' (the other heads keep the labeled rows')."""
    rng = np.random.default_rng(0)
    (x_l, y_l), (x_u, _), (x_t, a_t) = (
        two_feature_rows(rng, n, agree, False, ones=ones, noise=0.6)
        for n, agree, ones in ((600, True, 0.5), (300, False, 0.8), (600, False, 0.8)))
    dataset = loader.from_arrays(catalog.CATALOG[0], x_l, y_l, x_u, x_t)
    test = blocks.test_blocks(SMOKE, dataset, jax.random.key(0))
    assert test.independent, test.describe()
    first, second = training.joint_pair(SMOKE)
    priors = test.head_priors(SMOKE, dataset)
    follows_a = int(np.argmax(priors[[first, second], 1]))  # the head of a's block
    ones = a_t.mean()  # 0.757 in this draw; the block head says 0.738
    np.testing.assert_allclose(priors[[first, second][follows_a]], [1 - ones, ones], atol=0.03)
    np.testing.assert_allclose(priors[[first, second][1 - follows_a]], [0.5, 0.5], atol=0.05)
    np.testing.assert_allclose(priors[:first], np.tile(training.labeled_prior(dataset),
                                                       (first, 1)))
    assert test.head_priors(SMOKE.replace(strategy="divdis"), dataset) is None
    assert "class shares on the target 0.26/0.74 and 0.50/0.50" in test.describe()
    again = serialization.from_json(blocks.BlockTest, serialization.to_json(test))
    np.testing.assert_allclose(again.head_priors(SMOKE, dataset), priors)
    # held to the labeled balance, a's pair head calls some of the target's extra ones zeros
    # (0.938 right, against 0.980 held to its block's)
    head = [first, second][follows_a]
    masks = test.head_masks(SMOKE)
    right = {}
    for name, held in (("labeled", None), ("block", priors)):
        ensemble = training.train(SMOKE, dataset, jax.random.key(0), masks=masks, priors=held)
        right[name] = np.mean(ensemble.predict_proba(x_t)[head].argmax(-1) == a_t)
    assert right["block"] > right["labeled"] + 0.02, right


def test_the_run_holds_the_pair_to_its_blocks_balance_only_when_asked():
    g = generated(0)
    dataset = loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                                 g.x["target"])
    labeled = np.tile(training.labeled_prior(dataset), (SMOKE.num_heads, 1))
    pair = list(training.joint_pair(SMOKE))
    for on in (False, True):
        ensemble, test = pipeline.train_heads(SMOKE.replace(block_balance=on), dataset,
                                              jax.random.key(0), log=lambda _: None)
        assert test.independent and ensemble.masks is not None
        expected = test.head_priors(SMOKE, dataset) if on else labeled
        np.testing.assert_allclose(ensemble.priors, expected, rtol=1e-6)
        np.testing.assert_allclose(ensemble.priors[pair], test.target_balance if on
                                   else labeled[pair], rtol=1e-6)


def test_features_that_carry_both_classes_do_not_pass():
    test = blocks.test_blocks(SMOKE, two_feature_set(mixed=True), jax.random.key(0))
    assert not test.independent and test.kappa > blocks.INDEPENDENT_KAPPA, test.describe()
    assert test.head_masks(SMOKE) is None
    assert test.held_out_correct == () and test.held_outs(SMOKE) == ()


def test_the_toy_sets_two_coordinates_are_two_blocks():
    g = generated(0)
    dataset = loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                                 g.x["target"])
    test = blocks.test_blocks(SMOKE, dataset, jax.random.key(0))
    assert test.independent and test.block.shape == (2,) and test.block[0] != test.block[1]


def test_when_the_test_applies():
    dataset = two_feature_set()
    assert blocks.applies(SMOKE, dataset)
    assert not blocks.applies(SMOKE.replace(feature_blocks=False), dataset)
    assert not blocks.applies(SMOKE.replace(strategy="erm"), dataset)  # no joint pair
    assert not blocks.applies(SMOKE.replace(num_heads=2), dataset)
    wide = loader.from_arrays(catalog.CATALOG[0], np.zeros((4, blocks.MOST_FEATURES + 1)),
                              np.array([0, 1, 0, 1]), np.zeros((2, blocks.MOST_FEATURES + 1)),
                              np.zeros((4, blocks.MOST_FEATURES + 1)))
    assert not blocks.applies(SMOKE, wide)


def test_a_masked_head_ignores_the_inputs_it_does_not_see():
    module = models.make_backbone((4,), 2, "mlp", (8,))
    params = models.init_ensemble(module, jax.random.key(0), 2, (4,))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    masks = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.float32)
    changed = x.copy()
    changed[:, 2:] += 3.0
    before = models.ensemble_apply(module, params, x, masks)
    after = models.ensemble_apply(module, params, changed, masks)
    np.testing.assert_allclose(before[0], after[0])  # head 0 does not see features 2 and 3
    assert not np.allclose(before[1], after[1])
    # all-ones masks are the unmasked ensemble
    np.testing.assert_allclose(models.ensemble_apply(module, params, x, np.ones((2, 4))),
                               models.ensemble_apply(module, params, x), rtol=1e-6)


def test_the_test_is_recorded():
    test = blocks.BlockTest(block=np.array([True, False, True]), kappa=0.05, labeled_kappa=0.97,
                            seconds=1.5)
    back = serialization.from_json(blocks.BlockTest, serialization.to_json(test))
    np.testing.assert_array_equal(back.block, test.block)
    assert back.kappa == 0.05 and back.independent
    assert "two explanations" in test.describe()
    assert not blocks.BlockTest(block=test.block, kappa=0.05, labeled_kappa=0.3,
                                seconds=0.0).independent  # the labels are not explained
    assert test.held_outs(Config(num_heads=4)) == ()  # measured on no held-out rows
    assert test.leaks == () and not test.leaky  # not measured
    measured = dataclasses.replace(test, held_out_correct=(40, 30), held_out_rows=50,
                                   leaks=(0.1, 0.5))
    again = serialization.from_json(blocks.BlockTest, serialization.to_json(measured))
    assert again.held_out_correct == (40, 30) and again.held_out_rows == 50
    assert again.leaks == (0.1, 0.5) and again.leaky and "leaky" in again.describe()
    assert [(h.heads, h.correct) for h in again.held_outs(Config(num_heads=4))] == [
        ((2,), 40), ((3,), 30)]
    # what the label loop reads: the same, unless there is no test or the rule turns it off
    four = Config(num_heads=4)
    assert blocks.feature_held_out(again, four) == again.held_outs(four)
    assert blocks.feature_held_out(None, four) == ()
    assert blocks.feature_held_out(again, four.override(["rule.block_held_out=false"])) == ()
    masks = test.head_masks(Config(num_heads=4))
    np.testing.assert_array_equal(masks[2], [1, 0, 1])
    np.testing.assert_array_equal(masks[3], [0, 1, 0])
    assert test.head_masks(Config(strategy="divdis")) is None


def test_the_kept_heads_block():
    # heads 2 and 3 see one block each; heads 0 and 1 see every input
    masks = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1], [0, 1, 0]], np.float32)
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 2, (2, 1000))  # the blocks' features: independent
    twin = np.where(rng.random(1000) < 0.03, 1 - second, second)  # 97% like the second's
    mixture = np.where(rng.random(1000) < 0.5, first, second)  # 75% like each
    predictions = np.stack([twin, mixture, first, second])
    np.testing.assert_array_equal(blocks.kept_block(masks, predictions, 2, 2), masks[2])
    np.testing.assert_array_equal(blocks.kept_block(masks, predictions, 3, 2), masks[3])
    # a head that sees everything follows the block whose head it agrees with as two
    # explanations of the labels agree; a mixture of both blocks follows neither
    np.testing.assert_array_equal(blocks.kept_block(masks, predictions, 0, 2), masks[3])
    assert blocks.kept_block(masks, predictions, 1, 2) is None
    assert blocks.kept_block(None, predictions, 2, 2) is None  # no blocks passed
    # the same, head by head
    assert [blocks.followed_head(predictions, h, (2, 3), 2) for h in range(4)] == [3, None, 2, 3]


def test_blocks_that_pass_show_a_shift():
    passed = blocks.BlockTest(block=np.array([True, False]), kappa=0.05, labeled_kappa=0.9,
                              seconds=0.0)
    assert blocks.shows_shift(passed)
    assert not blocks.shows_shift(dataclasses.replace(passed, kappa=0.5))  # alike on the target
    assert not blocks.shows_shift(None)
