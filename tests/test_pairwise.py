"""Pairwise composites for more than two classes: routing, coupling, composing, training."""

import dataclasses

import jax
import numpy as np
import pytest

from ambig_jax import challenge
from ambig_jax import pairwise
from ambig_jax import pipeline
from ambig_jax import refinement
from ambig_jax import training
from ambig_jax.config import PRESETS
from ambig_jax.datasets import catalog
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader

# The feature blocks' test would pass on these rows: it finds the rotated blocks too, and heads
# that see one block each cannot mix the features (`test_where_blocks_pass_no_composites`).
SMOKE = PRESETS["smoke"].replace(feature_blocks=False)
CLASSES = np.array([4, 5, 6])


ROTATION = np.linalg.qr(np.random.default_rng(99).normal(size=(8, 8)))[0]


def three_class_rows(rng, num_rows: int, agree: bool, rotate: bool):
    """Rows of 8 features: a noisy code of class a (4 features) beside one of class b (4
    more), with `rotate` turned by a fixed rotation. b = a (`agree`, the labeled rows) or
    independent (the target)."""
    a = rng.integers(0, 3, num_rows)
    b = a.copy() if agree else rng.integers(0, 3, num_rows)
    code = np.array([[1.5, -1.0, 0.0, 0.5], [-1.0, 1.5, 0.5, 0.0], [0.0, 0.5, -1.0, 1.5]])
    x = np.concatenate([code[a], code[b]], axis=1) + rng.normal(0, 0.3, (num_rows, 8))
    x = x @ ROTATION if rotate else x
    return x.astype(np.float32), a, b


def three_class_set(seed: int = 0, rotate: bool = True) -> generator.GeneratedSet:
    rng = np.random.default_rng(seed)
    x, y, meta = {}, {}, {}
    for split, rows, agree in (("labeled", 600, True), ("unlabeled", 600, False),
                               ("target", 600, False)):
        x[split], a, b = three_class_rows(rng, rows, agree, rotate)
        y[split], meta[split] = CLASSES[a], {"spurious": CLASSES[b]}
    return generator.GeneratedSet(catalog.CATALOG[456], x, y, meta)


def as_dataset(generated: generator.GeneratedSet) -> loader.Dataset:
    return loader.from_arrays(generated.info, generated.x["labeled"], generated.y["labeled"],
                              generated.x["unlabeled"], generated.x["target"])


def test_applies_with_a_label_per_pair_of_classes():
    three = as_dataset(three_class_set())
    assert pairwise.applies(SMOKE, three)
    assert not pairwise.applies(SMOKE.replace(pairwise=False), three)
    assert not pairwise.applies(SMOKE.replace(budget=2), three)  # 3 pairs, 2 labels
    two = loader.from_arrays(catalog.CATALOG[0], three.x_labeled[:4], np.array([0, 1, 0, 1]),
                             three.x_unlabeled, three.x_target)
    assert not pairwise.applies(SMOKE, two)
    four = loader.from_arrays(catalog.CATALOG[456], three.x_labeled[:4], np.arange(4),
                              three.x_unlabeled, three.x_target)
    assert not pairwise.applies(SMOKE, four)  # 6 pairs > 5 labels


def test_pairs_orientations_and_routes():
    assert pairwise.class_pairs(3) == ((0, 1), (0, 2), (1, 2))
    np.testing.assert_array_equal(pairwise.orientations(2), [[0, 0], [0, 1], [1, 0], [1, 1]])
    probs = np.array([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6], [0.2, 0.1, 0.7], [0.3, 0.3, 0.4]])
    # ties between the second and third class go to the lower index (a stable sort)
    np.testing.assert_array_equal(pairwise.route(probs, pairwise.class_pairs(3)), [0, 2, 1, 1])


def test_mixtures_halve_two_rows_of_different_classes_and_label_each_half():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 2.0]], np.float32)
    y = np.array([0, 1, 2, 0], np.int32)
    mixed, labels = pairwise.mixtures(x, y, np.random.default_rng(0), 50)
    assert mixed.shape == (100, 2) and mixed.dtype == np.float32 and labels.dtype == np.int32
    # each mixture twice, once with each of its two classes, never two rows of one class
    np.testing.assert_array_equal(mixed[:50], mixed[50:])
    assert (labels[:50] != labels[50:]).all()
    for row, a, b in zip(mixed[:50], labels[:50], labels[50:]):
        assert any(np.allclose(row, (x[i] + x[j]) / 2)
                   for i in np.flatnonzero(y == a) for j in np.flatnonzero(y == b))
    assert set(map(tuple, np.sort(np.stack([labels[:50], labels[50:]], 1), 1))) == {
        (0, 1), (0, 2), (1, 2)}
    one_class, none = pairwise.mixtures(x, np.zeros(4, np.int32), np.random.default_rng(0), 5)
    assert one_class.shape == (0, 2) and none.shape == (0,)


def test_agreeing_rows_fill_a_pools_routed_rows_up_to_the_rows_of_its_two_classes():
    dataset = as_dataset(three_class_set())
    prior = np.bincount(dataset.y_labeled, minlength=3) / len(dataset.y_labeled)
    for pair in pairwise.class_pairs(3):
        # 600 target rows, each class about a third: about 600 * 4/9 have both features in the pair
        whole = round(600 * (prior[pair[0]] + prior[pair[1]]) ** 2)
        assert 220 < whole < 310
        for routed in (0, 100, whole, whole + 50):
            rows = pairwise.agreeing_rows(dataset, pair, routed, np.random.default_rng(0))
            assert len(rows) == max(whole - routed, 0) and len(np.unique(rows)) == len(rows)
            assert np.isin(dataset.y_labeled[rows], pair).all()
        rows = pairwise.agreeing_rows(dataset, pair, 0, np.random.default_rng(0))
        assert set(dataset.y_labeled[rows]) == set(pair)
    # never more rows than the labeled ones of the pair
    many = dataclasses.replace(dataset, x_target=np.concatenate([dataset.x_target] * 20))
    rows = pairwise.agreeing_rows(many, (0, 1), 0, np.random.default_rng(0))
    assert len(rows) == np.isin(dataset.y_labeled, (0, 1)).sum()
    # with two classes every target row is in the pair: nothing is missing
    two = loader.from_arrays(catalog.CATALOG[0], dataset.x_labeled, dataset.y_labeled % 2,
                             dataset.x_unlabeled, dataset.x_target)
    assert len(pairwise.agreeing_rows(two, (0, 1), 600, np.random.default_rng(0))) == 0


def test_rows_whose_features_agree_unmix_a_pair_whose_pool_is_mostly_cross_rows():
    """A pair's routed rows can be mostly rows whose two features differ (85% here). There the
    true pair of heads always disagrees, far from independent, and DivDis's pair mixes the
    features; labeled rows, whose features agree, bring it back (`agreeing_rows`)."""
    rng = np.random.default_rng(0)
    code = np.array([[1.0, -1.0, 0.5, 0.0], [-1.0, 1.0, 0.0, 0.5]])

    def rows(a, b):
        x = np.concatenate([code[a], code[b]], axis=1) + rng.normal(0, 0.4, (len(a), 8))
        return x.astype(np.float32)

    a = rng.integers(0, 2, 600)
    left = rng.integers(0, 2, 600)
    cross = rng.random(600) < 0.85
    right = np.where(cross, 1 - left, left)
    labeled, pool = rows(a, a), rows(left, right)
    config = PRESETS["smoke"].replace(strategy="divdis", num_heads=2, feature_blocks=False)
    reads = {}
    for extra in (False, True):
        target = np.concatenate([pool, labeled[:300]]) if extra else pool
        dataset = loader.from_arrays(catalog.CATALOG[0], labeled, a, pool, target)
        heads = training.train(config, dataset, jax.random.key(0)).predict_proba(pool).argmax(-1)
        # each head's share of the cross rows on which it reads its own feature
        reads[extra] = sorted(max((h == left)[cross].mean(), (h == right)[cross].mean())
                              for h in heads)
    assert reads[False][0] < 0.9  # 0.84: a mixture
    assert reads[True][0] > 0.97  # 0.99 both


def test_couple_by_hand():
    pairs = pairwise.class_pairs(3)
    # row 0: 0 beats 1 (0.9) and 2 (0.8), 1 vs 2 a coin: p ∝ (0.72, 0.05, 0.1)
    # row 1: every pair a coin: uniform
    beats = np.array([[0.9, 0.5], [0.8, 0.5], [0.5, 0.5]])
    probs = pairwise.couple(beats, pairs, 3)
    np.testing.assert_allclose(probs[0], np.array([0.72, 0.05, 0.1]) / 0.87, rtol=1e-6)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3, rtol=1e-6)
    # two classes: the binary head itself; sure heads stay finite
    np.testing.assert_allclose(pairwise.couple(np.array([[0.3, 1.0]]), ((0, 1),), 2),
                               [[0.3, 0.7], [1 - 1e-4, 1e-4]], rtol=1e-6)


def test_compose_takes_one_head_of_each_pair():
    pairs = pairwise.class_pairs(3)
    beats = np.random.default_rng(0).uniform(size=(3, 2, 5))
    composites = pairwise.compose(beats, pairs, 3)
    assert composites.shape == (8, 5, 3)
    np.testing.assert_allclose(composites.sum(-1), 1.0, rtol=1e-6)
    # composite 0b110 = 6: head 1 of pairs (0, 1) and (0, 2), head 0 of pair (1, 2)
    expected = pairwise.couple(beats[[0, 1, 2], [1, 1, 0]], pairs, 3)
    np.testing.assert_allclose(composites[6], expected)


def reading_heads(left: np.ndarray, right: np.ndarray, flipped: tuple[bool, ...]):
    """Pair heads that read one digit exactly, p(a rather than b) of pair (a, b): 1 where their
    digit is a, 0 where it is b, 0.5 where it is neither; pair p's heads read (left, right),
    or (right, left) where `flipped[p]`."""
    beats = []
    for (a, b), flip in zip(pairwise.class_pairs(3), flipped):
        reads = [np.where(d == a, 1.0, np.where(d == b, 0.0, 0.5)) for d in (left, right)]
        beats.append(reads[::-1] if flip else reads)
    return np.array(beats)


def test_pair_heads_that_read_one_side_agree_across_pairs():
    """Module docstring, step 4, by hand: every off-diagonal cell (l, r) of three digits once,
    routed to its pair; pair (0, 2)'s heads in the other order, so the pure composites are
    0b010 (every left head) and 0b101 (every right head)."""
    left, right = np.array([(l, r) for l in range(3) for r in range(3) if l != r]).T
    pairs = pairwise.class_pairs(3)
    to_pair = np.array([pairs.index((min(l, r), max(l, r))) for l, r in zip(left, right)])
    beats = reading_heads(left, right, (False, True, False))
    reading = pairwise.cross_reading(beats, pairs, to_pair)
    # pair (0, 1)'s left head on pair (0, 2)'s rows: where (0, 2)'s left head says 0 (row
    # (0, 2)) it says 0 surely, where it says 2 (row (2, 0)) it guesses: 1 - 0.5
    assert reading[0, 0, 1, 1] == 0.5 and reading[0, 0, 1, 0] == -0.5
    assert reading[0, 1, 1, 0] == 0.5 and reading[0, 1, 1, 1] == -0.5
    scores = pairwise.consistency(reading)
    # pure: 6 ordered pairs of pairs at 0.5; one pair flipped: 2 at 0.5 and 4 at -0.5
    np.testing.assert_allclose(scores, [-1, -1, 3, -1, -1, 3, -1, -1])
    assert pairwise.pure_composites(scores) == (2, 5)
    predicted = pairwise.compose(beats, pairs, 3).argmax(-1)
    np.testing.assert_array_equal(predicted[2], left)
    np.testing.assert_array_equal(predicted[5], right)


def test_a_student_keeps_its_teachers_doubt():
    teacher = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    # the student agrees on row 0, picks the teacher's second class on row 1, its third on row 2
    doubted = training.with_teacher_doubt(teacher, np.array([0, 1, 0]))
    np.testing.assert_allclose(doubted, [[0.7, 0.2, 0.1], [0.35, 0.4, 0.25], [0.8, 0.1, 0.1]])
    np.testing.assert_array_equal(doubted.argmax(-1), [0, 1, 0])


def test_students_together_unlearn_a_teachers_slips_to_the_other_feature():
    generated = three_class_set()
    dataset = as_dataset(generated)
    a = dataset.to_index(generated.y["target"])
    b = dataset.to_index(generated.meta["target"]["spurious"])
    # teacher 0 reads a, but says b, sure, on 30% of the rows where the two differ; teacher 1
    # reads b
    slips = (a != b) & (np.random.default_rng(1).random(len(a)) < 0.3)
    teachers = np.stack([np.eye(3)[np.where(slips, b, a)], np.eye(3)[b]]) * 0.85 + 0.05
    right_on_slips, agree = [], []
    for weight in (0.0, SMOKE.diversity_weight):
        students, _ = refinement.train_students(SMOKE.replace(diversity_weight=weight), dataset,
                                                teachers, jax.random.key(0))
        read_a, read_b = students.predict_proba(dataset.x_target).argmax(-1)
        assert (read_b == b).mean() > 0.97  # each head learned its own teacher's rows
        right_on_slips.append((read_a[slips] == a[slips]).mean())
        agree.append((read_a == read_b).mean())
    # alone (no diversity term) a student learns back part of the slips; together, with the
    # term, the two agree less, nearer the 1/3 of independent features, and the slips go
    assert right_on_slips[1] > right_on_slips[0] + 0.04 and right_on_slips[1] > 0.93
    assert agree[1] < agree[0] - 0.02
    # the labeled rows (where the two features agree) teach every student their label; a
    # revealed label overrides the first teacher on its row
    row = int(np.flatnonzero(slips)[0])
    students, taught = refinement.train_students(SMOKE, dataset, teachers, jax.random.key(0),
                                                 revealed={row: int(a[row])}, with_labeled=True)
    assert taught.all() and students.config.num_heads == 2
    read_a, read_b = students.predict_proba(dataset.x_target).argmax(-1)
    assert (read_a == a).mean() > 0.93 and (read_b == b).mean() > 0.95


def test_composites_follow_the_usual_heads_and_read_each_feature():
    generated = three_class_set()
    dataset = as_dataset(generated)
    lines = []
    heads, blocks = pipeline.train_heads(SMOKE, dataset, pipeline.run_keys(0)[0],
                                         log=lines.append)
    assert isinstance(heads, pairwise.PairwiseHeads) and blocks is None
    assert lines[-1].endswith("heads 4-5 are the students of the most consistent composite and "
                              "its complement")
    # the smoke preset's 2 starts: the usual joint pair's and every pair of classes'
    assert len(heads.plain.replicas) == 1 and heads.plain.replicated == (2, 3)
    assert all(len(member.replicas) == 1 for member in heads.members)
    probs = heads.calibrated_proba(dataset.x_target)
    # the smoke preset's 4 heads, then the students of the 2 most consistent composites
    assert probs.shape == (4 + 2, 600, 3) and heads.students.config.num_heads == 2
    np.testing.assert_allclose(probs[:4], heads.plain.calibrated_proba(dataset.x_target))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # a labeled row trains the two pairs of its class; a target row, the pair it is routed to
    assert heads.routed[:, 0].sum() == 1200 and heads.routed[:, 2].sum() == 600
    assert (heads.routed[:, 2] > 50).all()
    # each pair's pool is filled up with labeled rows whose features agree (`agreeing_rows`)
    prior = np.bincount(dataset.y_labeled, minlength=3) / len(dataset.y_labeled)
    whole = [round(600 * (prior[a] + prior[b]) ** 2) for a, b in heads.pairs]
    np.testing.assert_array_equal(heads.routed[:, 2] + heads.routed[:, 3],
                                  np.maximum(heads.routed[:, 2], whole))
    assert heads.routed[:, 3].sum() > 100
    assert "agreeing in its pool" in lines[-1]
    feature_a = dataset.to_index(generated.y["target"])
    feature_b = dataset.to_index(generated.meta["target"]["spurious"])
    every = heads.composites(dataset.x_target)
    right_a = (every.argmax(-1) == feature_a).mean(axis=1)
    right_b = (every.argmax(-1) == feature_b).mean(axis=1)
    # the kept two are the best composite of each feature and each other's complement; a
    # mixture of the two features is right on 2/3 of the rows, the smoke preset's heads rough
    assert set(heads.kept) == {int(right_a.argmax()), int(right_b.argmax())}
    assert sum(heads.kept) == 7 and min(right_a.max(), right_b.max()) > 0.85
    # each student follows its composite, with the composite's doubt row by row
    taught = every[list(heads.kept)]
    assert ((probs[4:].argmax(-1) == taught.argmax(-1)).mean(axis=1) > 0.9).all()
    np.testing.assert_array_equal(
        probs[4:].argmax(-1), heads.students.predict_proba(dataset.x_target).argmax(-1))
    np.testing.assert_allclose(probs[4:].max(-1), taught.max(-1))
    # a kept student's refinement learns together with the other kept student
    assert (heads.complement(4), heads.complement(5), heads.complement(3)) == (5, 4, None)
    refined = pipeline.refine_head(SMOKE, dataset, heads, probs, 4, {0: 1}, jax.random.key(0),
                                   unshifted=False)
    assert refined.taught[0] and (refined.predictions == probs[4].argmax(-1)).mean() > 0.9
    with pytest.raises(ValueError, match="complement or within one block"):
        refinement.refine(SMOKE, dataset, probs[4], {}, jax.random.key(0),
                          mask=np.ones(8, np.float32), complement=probs[5])
    # "consistent": the two composites themselves; "all": all eight
    consistent = pairwise.train_pairs(SMOKE.replace(composites="consistent"), dataset,
                                      pipeline.pairwise_key(pipeline.run_keys(0)[0]),
                                      heads.plain)
    assert consistent.kept == heads.kept and consistent.students is None
    assert consistent.kept_description == "the most consistent composite and its complement"
    np.testing.assert_allclose(consistent.calibrated_proba(dataset.x_target)[4:], taught)
    every_head = dataclasses.replace(consistent, kept=tuple(range(8)))
    assert every_head.calibrated_proba(dataset.x_target).shape == (4 + 8, 600, 3)
    assert every_head.kept_description == "the composites"


def test_a_router_that_learns_mixtures_routes_the_rows_between_two_classes():
    generated = three_class_set()
    dataset = as_dataset(generated)
    a = dataset.to_index(generated.y["target"])
    b = dataset.to_index(generated.meta["target"]["spurious"])
    pairs = pairwise.class_pairs(3)
    off = a != b
    truth = np.array([pairs.index((min(i, j), max(i, j))) for i, j in zip(a[off], b[off])])
    key = pipeline.pairwise_key(pipeline.run_keys(0)[0])
    heads = pairwise.train_pairs(SMOKE.replace(router_mixtures=2, pair_replicates=1), dataset,
                                 key, plain=None)
    routed = pairwise.route(heads.router.predict_proba(dataset.x_target).mean(0), pairs)
    assert (routed[off] == truth).mean() > 0.9  # 0.86 with the labeled rows alone
    # the pairs still learn on the labeled rows of their classes alone
    assert heads.routed[:, 0].sum() == 1200


def test_where_the_target_is_not_shifted_no_starts_and_no_composites():
    """Only the ERM anchor can be kept there (`disambiguation.conclude`)."""
    dataset = as_dataset(three_class_set())
    heads, blocks = pipeline.train_heads(SMOKE, dataset, pipeline.run_keys(0)[0],
                                         log=lambda _: None, shifted=False)
    assert blocks is None and not isinstance(heads, pairwise.PairwiseHeads)
    assert not heads.replicas and heads.calibrated_proba(dataset.x_target).shape == (4, 600, 3)


def test_where_blocks_pass_no_composites():
    dataset = as_dataset(three_class_set(rotate=False))
    config = PRESETS["smoke"]
    heads, blocks = pipeline.train_heads(config, dataset, pipeline.run_keys(0)[0],
                                         log=lambda _: None)
    assert blocks.independent and heads.masks is not None
    assert not isinstance(heads, pairwise.PairwiseHeads) and not heads.replicas
    predicted = heads.calibrated_proba(dataset.x_target).argmax(-1)
    truth = dataset.to_index(three_class_set(rotate=False).y["target"])
    assert (predicted == truth).mean(axis=1).max() > 0.95


def test_end_to_end_with_occlusion_maps_of_the_kept_composites(tmp_path):
    generator.save(three_class_set(1), tmp_path)
    run = challenge.run_set(456, SMOKE, tmp_path, tmp_path / "out", log=lambda *_: None)
    assert run.labels_used == 5 and len(run.head_accuracies) == 4 + 2
    assert max(run.head_accuracies[4:]) > 0.8
    run_dir = tmp_path / "out" / "456_mnist_embed"
    with np.load(run_dir / "heads.npz") as heads:
        assert heads["head_probs"].shape == (6, 600, 3)
        assert heads["occlusion"].shape == (6, 3, 8) and "gradient" not in heads
    assert (run_dir / "report.html").is_file()


def test_a_pair_with_no_target_row_leaves_the_usual_heads():
    generated = three_class_set()
    # a target of rows like the labeled 4s: 4 is always likeliest, no row goes to 5|6
    fours = generated.x["labeled"][generated.y["labeled"] == 4]
    narrow = loader.from_arrays(generated.info, generated.x["labeled"], generated.y["labeled"],
                                generated.x["unlabeled"], fours)
    key = pipeline.run_keys(0)[0]
    with pytest.raises(pairwise.EmptyPair, match="no target row routed to classes 5 and 6"):
        pairwise.train_pairs(SMOKE, narrow, key, plain=None)
    lines = []
    heads, _ = pipeline.train_heads(SMOKE, narrow, key, log=lines.append)
    assert not isinstance(heads, pairwise.PairwiseHeads)
    assert heads.calibrated_proba(narrow.x_target).shape == (4, len(fours), 3)
    assert "no composite heads: no target row routed to classes 5 and 6" in lines[-1]
