import numpy as np
import pytest

from ambig_jax import disambiguation as dis
from ambig_jax.config import Rule

RULE = Rule()
# One head is the label's feature (no "unidentified" hypothesis), its probabilities read either
# way or trusted as given.
HEADS = Rule(unidentified_prior=0.0)
CALIBRATED = Rule(exact_prior=0.0, unidentified_prior=0.0, temperatures=(1.0,))
TWO_READINGS = Rule(unidentified_prior=0.0, temperatures=(1.0,))  # as given, and exact


def heads_from_predictions(*predictions, num_classes=2, confidence=0.99):
    """[H, N, C] confident heads from class sequences."""
    preds = np.asarray(predictions)
    probs = np.full(preds.shape + (num_classes,), (1 - confidence) / (num_classes - 1))
    np.put_along_axis(probs, preds[..., None], confidence, axis=-1)
    return probs


# Head 0 follows the truth; head 1 agrees on rows 0-5 and disagrees on rows 6-9 (two kinds:
# rows 6, 7 truth 0 / head1 says 1; rows 8, 9 truth 1 / head1 says 0).
TRUTH = np.array([0, 1, 0, 1, 0, 1, 0, 0, 1, 1])
HEAD1 = np.array([0, 1, 0, 1, 0, 1, 1, 1, 0, 0])


def test_posterior_moves_to_the_head_that_explains_the_labels():
    probs = heads_from_predictions(TRUTH, HEAD1)
    np.testing.assert_allclose(dis.head_posterior(probs, {}), [0.5, 0.5])
    post = dis.head_posterior(probs, {6: 0})
    assert post[0] > 0.9
    assert dis.choose_head(dis.head_posterior(probs, {6: 0, 8: 1})) == 0
    assert dis.choose_head(dis.head_posterior(probs, {6: 1, 8: 0})) == 1


def test_information_gain_is_largest_where_heads_disagree():
    probs = heads_from_predictions(TRUTH, HEAD1)
    gain = dis.information_gain(probs, np.array([0.5, 0.5]))
    assert set(np.flatnonzero(gain > 0.5)) == {6, 7, 8, 9}
    assert np.all(gain[:6] < 1e-6)
    assert np.allclose(dis.information_gain(probs, np.array([1.0, 0.0])), 0.0, atol=1e-9)


def test_queries_cover_both_kinds_of_disagreement_and_never_repeat():
    probs = heads_from_predictions(TRUTH, HEAD1)
    rng = np.random.default_rng(0)
    revealed = {}
    first = dis.select_query(probs, np.array([0.5, 0.5]), revealed, rng)
    assert first == 6  # largest gain, lowest row
    revealed[first] = 1  # a noisy answer keeps the posterior undecided
    second = dis.select_query(probs, np.array([0.5, 0.5]), revealed, rng)
    assert second in (8, 9)  # the other kind of disagreement
    revealed[second] = 1
    third = dis.select_query(probs, np.array([0.5, 0.5]), revealed, rng)
    assert third not in revealed


def test_agreeing_heads_fall_back_to_random_rows():
    probs = heads_from_predictions(TRUTH, TRUTH)
    rows = {dis.select_query(probs, np.array([0.5, 0.5]), {}, np.random.default_rng(s))
            for s in range(20)}
    assert len(rows) > 3


def test_every_row_revealed_is_an_error():
    probs = heads_from_predictions([0, 1], [1, 0])
    with pytest.raises(ValueError):
        dis.select_query(probs, np.array([0.5, 0.5]), {0: 0, 1: 1}, np.random.default_rng(0))


def test_estimate_on_synthetic_agreement_patterns():
    # A sure posterior on a head that is right where it is confident: accuracy near 1 (two
    # labels leave P(no head is the label) at ~0.12, whose share of the mean is ~0.8).
    probs = heads_from_predictions(TRUTH, HEAD1, confidence=0.999)
    kept = np.eye(2)[TRUTH]  # the submitted predictions, as sure probabilities
    sure = dis.estimate_accuracy(probs, np.array([1.0, 0.0]), kept, {6: 0, 8: 1})
    assert 0.96 < sure.accuracy <= 1.0 and sure.low < sure.accuracy <= sure.high
    assert sure.label_errors == 0 and sure.unidentified < RULE.unidentified_prior
    # Undecided between two heads that disagree on 40% of rows: about 0.8 expected.
    split = dis.estimate_accuracy(probs, np.array([0.5, 0.5]), kept, {})
    assert abs(split.accuracy - 0.8) < 0.03
    assert split.unidentified == pytest.approx(RULE.unidentified_prior)  # no labels, no evidence
    # Labels that contradict every head: a worse estimate.
    contradicted = dis.estimate_accuracy(probs, np.array([0.5, 0.5]), kept,
                                         {0: 1, 1: 0, 2: 1, 3: 0})
    assert contradicted.label_errors == 4 and contradicted.accuracy < split.accuracy


# Two heads per feature (0, 1 follow the truth; 2, 3 the other feature), disagreeing on the
# second half of the rows.
FEATURES = np.array([TRUTH, TRUTH, HEAD1, HEAD1])


def test_a_sure_error_where_the_heads_split_says_no_head_is_the_label():
    probs = heads_from_predictions(*FEATURES, confidence=0.999)
    right = {6: 0, 7: 0, 8: 1}
    agrees = dis.unidentified_weight(probs, right)
    # The heads' hypothesis predicts these labels at ~1/2 (half the heads), the other at 1/2.
    assert agrees < RULE.unidentified_prior
    with_error = dis.unidentified_weight(probs, right | {9: 0})
    assert with_error > 2 * RULE.unidentified_prior
    # The same error where the head that got it wrong was unsure barely counts against it.
    unsure = probs.copy()
    unsure[:2, 9] = [0.45, 0.55]
    assert dis.unidentified_weight(unsure, right | {9: 0}) < with_error / 2
    assert dis.unidentified_weight(probs, right, Rule(unidentified_prior=0.0)) == 0.0
    # The estimate moves towards the kept head's vote share (1/2 on disputed rows: 0.8).
    posterior, kept = np.array([0.5, 0.5, 0.0, 0.0]), probs[0]
    high = dis.estimate_accuracy(probs, posterior, kept, right)
    low = dis.estimate_accuracy(probs, posterior, kept, right | {9: 0})
    assert low.unidentified == pytest.approx(with_error)
    assert high.accuracy > 0.95 and 0.8 < low.accuracy < high.accuracy - 0.05
    assert low.low < 0.85 < low.high  # the interval spans both hypotheses


def test_a_kept_block_head_is_estimated_from_its_held_out_rows():
    # Sure heads whose feature is right on 880 of 1000 held-out labeled rows (888's halves): its
    # probabilities say ~1, the held-out rows 0.88.
    probs = heads_from_predictions(*FEATURES, confidence=0.999)
    posterior, kept, right = np.array([0.98, 0.0, 0.02, 0.0]), probs[0], {6: 0, 7: 0, 8: 1}
    held_out = dis.HeldOut(correct=880, rows=1000, heads=(0,))
    plain = dis.estimate_accuracy(probs, posterior, kept, right)
    measured = dis.estimate_accuracy(probs, posterior, kept, right, feature_held_out=(held_out,),
                                     kept_head=0)
    assert plain.accuracy > 0.95 and "held-out" not in plain.source
    # its share of the posterior scores the Beta (mean 0.88), the other head's the readings
    identified = 1.0 - measured.unidentified
    expected = identified * (0.98 * 0.88 + 0.02 * 0.6) + measured.unidentified * 0.8
    assert measured.accuracy == pytest.approx(expected, abs=0.01)
    assert "held-out labeled rows" in measured.source
    # conclude gives the held-out to the kept head only
    head, estimate, _ = dis.conclude(probs, posterior, right, 0.8,
                                     feature_held_out=(held_out,))
    assert head == 0 and estimate == measured
    other = dis.HeldOut(correct=880, rows=1000, heads=(2,))
    assert "held-out" not in dis.conclude(probs, posterior, right, 0.8,
                                          feature_held_out=(other,))[1].source
    # A sure error of a head whose feature is right on 88% of held-out rows is no surprise
    # under that reading: "no head is the label" gains less than from the head's probabilities
    # read up to a 5% noise alone (0.38 against 0.62).
    wrong, both = right | {9: 0}, dis.HeldOut(correct=880, rows=1000, heads=(0, 1))
    plain_weight = dis.unidentified_weight(probs, wrong)
    measured_weight = dis.unidentified_weight(probs, wrong, feature_held_out=(both,))
    assert measured_weight < plain_weight - 0.15
    # a measure of 99.9% makes the same error a surprise under the measured reading; the
    # head's own readings keep half the weight, so it stays possible (0.75, not ~1)
    sharp = dis.HeldOut(correct=9990, rows=10000, heads=(0, 1))
    sharp_weight = dis.unidentified_weight(probs, wrong, feature_held_out=(sharp,))
    assert plain_weight < sharp_weight < 0.8


def test_once_a_head_leads_queries_check_it_where_it_is_sure_and_the_heads_split():
    probs = heads_from_predictions(*FEATURES, confidence=0.999)
    probs[:2, 9] = [0.45, 0.55]  # the leading feature's heads are unsure on row 9
    leading = np.array([0.97, 0.02, 0.005, 0.005])
    rows = {dis.select_query(probs, leading, {6: 0}, np.random.default_rng(seed))
            for seed in range(20)}
    assert rows == {7, 8}  # disputed, sure, not asked; drawn at random between the two
    # Without the check: the most informative row about which head is right, of the kind of
    # disagreement not asked yet (row 7 disagrees like row 6), every time.
    assert {dis.select_query(probs, leading, {6: 0}, np.random.default_rng(seed),
                             Rule(check_from=1.0, pattern_from=1.0)) for seed in range(5)} == {8}
    # Only rows where the heads that still matter agree: head 1 parts from head 0 on row 7.
    probs[1, 7] = probs[1, 7, ::-1]
    rows = {dis.select_query(probs, leading, {6: 0}, np.random.default_rng(seed))
            for seed in range(20)}
    assert rows == {8}


def test_once_a_head_leads_it_is_tested_where_its_feature_parts_not_where_all_oppose_it():
    # Heads 0, 1 read the leading feature; heads 2 and 3 two others, each parting from it on
    # rows of its own (10-14, 15-18). On row 19 both part from it together: the single most
    # informative row, and on a set a head explains, where the leader's own errors gather.
    feature = np.array([0] * 10 + [1] * 10)
    other, third = feature.copy(), feature.copy()
    other[[10, 11, 12, 13, 14, 19]] ^= 1
    third[[15, 16, 17, 18, 19]] ^= 1
    probs = heads_from_predictions(feature, feature, other, third)
    leading = np.array([0.9, 0.04, 0.03, 0.03])  # a leader, below the checks' 0.95
    gain = dis.information_gain(probs, leading)
    assert np.argmax(gain) == 19
    rng = np.random.default_rng(0)
    # The pattern whose rows hold the most information together (rows 10-14), its first row.
    assert dis.select_query(probs, leading, {}, rng) == 10
    assert dis.select_query(probs, leading, {10: 0, 11: 0, 12: 0, 13: 0, 14: 0}, rng) == 15
    assert dis.select_query(probs, leading, {}, rng, Rule(pattern_from=1.0)) == 19
    # No head leads yet: the most informative row, as before.
    assert dis.select_query(probs, np.full(4, 0.25), {}, rng) == 19


def test_decisions_follow_the_estimate_mean_with_no_count_rule():
    good = dis.Estimate(0.95, 0.7, 0.98, label_errors=2, num_labels=5)
    assert dis.decide(good, 0.8).submit  # a low interval end or two errors do not abstain
    assert not dis.decide(good, 0.95).submit
    assert not dis.decide(good, 0.9, Rule(margin=0.06)).submit
    assert dis.decide(good, 0.9, Rule(margin=0.04)).submit
    assert "margin 0.04" in dis.decide(good, 0.9, Rule(margin=0.04)).reason


def test_noise_posterior_is_the_prior_without_labels_and_weighs_errors_by_doubt():
    eps, weights, log_evidence = dis.noise_posterior(np.zeros(0), num_classes=2)
    assert weights.sum() == pytest.approx(1.0) and np.all(np.diff(eps) > 0)
    assert np.dot(eps, weights) == pytest.approx(RULE.prior_noise, rel=1e-4)
    assert log_evidence == pytest.approx(0.0, abs=1e-9)  # no labels: probability 1

    def mean(label_probs):
        eps, weights, _ = dis.noise_posterior(np.array(label_probs), num_classes=2)
        return np.dot(eps, weights)

    right = mean([1.0] * 5)
    unsure_error, sure_error = mean([1.0] * 4 + [0.45]), mean([1.0] * 4 + [0.0])
    assert right < RULE.prior_noise and right < unsure_error < 0.05 < 0.1 < sure_error


def test_an_error_where_the_kept_head_was_unsure_costs_less():
    probs = heads_from_predictions(TRUTH, HEAD1, confidence=0.999)
    posterior = np.array([1.0, 0.0])
    wrong_label = {0: 1 - TRUTH[0], 6: TRUTH[6], 8: TRUTH[8]}
    sure = dis.estimate_accuracy(probs, posterior, np.eye(2)[TRUTH], wrong_label)
    doubtful = np.eye(2)[TRUTH]
    doubtful[0] = [0.45, 0.55] if TRUTH[0] == 1 else [0.55, 0.45]
    unsure = dis.estimate_accuracy(probs, posterior, doubtful, wrong_label)
    assert sure.label_errors == unsure.label_errors == 1
    assert sure.low < unsure.low and sure.accuracy < unsure.accuracy


def test_label_noise_costs_accuracy_only_where_the_heads_dispute_the_prediction():
    probs = heads_from_predictions(TRUTH, HEAD1, confidence=1.0)
    posterior, kept, labels = np.array([1.0, 0.0]), probs[0], {6: 0, 8: 1}

    def accuracy(noise):
        return dis.estimate_accuracy(probs, posterior, kept, labels,
                                     Rule(prior_noise=noise, unidentified_prior=0.0)).accuracy

    # 4 of 10 rows disputed: a noise rate eps there costs 0.4 * eps / 2 of the accuracy.
    assert accuracy(0.01) - accuracy(0.2) == pytest.approx(0.4 * 0.5 * 0.19, rel=0.2)
    agreeing = heads_from_predictions(TRUTH, TRUTH, confidence=1.0)
    assert dis.estimate_accuracy(agreeing, posterior, kept, labels, Rule(prior_noise=0.2)
                                 ).accuracy == pytest.approx(1.0)


def test_noise_posterior_evidence_is_the_labels_marginal_likelihood():
    # One label the kept head gave probability q: evidence E[(1 - eps) q + eps / 2].
    for q in (1.0, 0.7, 0.0):
        _, _, log_evidence = dis.noise_posterior(np.array([q]), num_classes=2)
        expected = (1 - RULE.prior_noise) * q + RULE.prior_noise / 2
        assert np.exp(log_evidence) == pytest.approx(expected, rel=1e-3)


def test_labels_that_a_hedging_head_gets_right_favour_the_exact_reading():
    # A head right on every row but only 70% sure of itself (a pushed head hedging).
    probs = heads_from_predictions(TRUTH, HEAD1, confidence=0.7)
    posterior, kept = np.array([1.0, 0.0]), probs[0]
    right = {row: int(TRUTH[row]) for row in range(5)}
    calibrated = dis.estimate_accuracy(probs, posterior, kept, right,
                                     CALIBRATED)
    assert calibrated.exact_weight == 0.0 and calibrated.accuracy < 0.72
    both = dis.estimate_accuracy(probs, posterior, kept, right, TWO_READINGS)
    # evidence ratio (1/0.7)^5 ~ 6 (less with the noise floor): the exact reading leads
    assert 0.8 < both.exact_weight < 0.9
    assert both.accuracy > calibrated.accuracy + 0.2 and both.low < both.accuracy
    # Labels the head gets wrong favour the calibrated reading (it expected 30% of them).
    wrong = {row: 1 - int(TRUTH[row]) for row in range(2)} | {2: int(TRUTH[2])}
    assert dis.estimate_accuracy(probs, posterior, kept, wrong, TWO_READINGS).exact_weight < 0.5
    # A sure head reads the same every way.
    sure = heads_from_predictions(TRUTH, HEAD1, confidence=1.0)
    one = dis.estimate_accuracy(sure, posterior, sure[0], right,
                                     CALIBRATED)
    two = dis.estimate_accuracy(sure, posterior, sure[0], right, TWO_READINGS)
    assert one.accuracy == pytest.approx(two.accuracy) and two.exact_weight == pytest.approx(0.5)
    every = dis.estimate_accuracy(sure, posterior, sure[0], right, HEADS)
    assert every.accuracy == pytest.approx(one.accuracy)


def test_sharpening_keeps_the_classes_and_spans_given_to_hard():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    np.testing.assert_array_equal(dis.sharpen(probs, 1.0), probs)
    half = dis.sharpen(probs, 0.5)
    np.testing.assert_allclose(half[0], np.array([36, 9, 1]) / 46)
    np.testing.assert_allclose(half.sum(-1), 1.0)
    np.testing.assert_allclose(dis.sharpen(probs, 0.01), dis.hard(probs), atol=1e-12)
    found = dis.readings(Rule(exact_prior=0.4, temperatures=(1.0, 0.5)), probs)
    assert [(name, prior) for name, prior, _ in found] == [
        ("calibrated T=1", pytest.approx(0.3)), ("calibrated T=0.5", pytest.approx(0.3)),
        ("exact", 0.4)]
    np.testing.assert_allclose(found[1][2][0], half)
    with pytest.raises(ValueError, match="temperatures"):
        Rule(temperatures=())
    with pytest.raises(ValueError, match="temperatures"):
        Rule(temperatures=(1.0, 0.0))


def test_the_labels_weigh_how_far_a_hedging_heads_doubt_is_believed():
    # A head 70% sure of every prediction and right on 9 rows of 10 (a pushed head hedging
    # below its accuracy). Four labels it gets right and one it gets wrong: the exact reading
    # cannot explain the error, the reading as given expects three times as many, and the
    # sharpened readings in between lift the estimate towards the truth.
    truth = np.tile(TRUTH, 10)
    kept_classes = truth.copy()
    kept_classes[::10] = 1 - truth[::10]  # wrong on a tenth of the rows
    probs = heads_from_predictions(kept_classes, 1 - kept_classes, confidence=0.7)
    posterior = np.array([1.0, 0.0])
    labels = {row: int(truth[row]) for row in (0, 1, 2, 3, 4)}  # row 0: the head's error

    def rise(heads):
        given = dis.estimate_accuracy(heads, posterior, heads[0], labels, TWO_READINGS)
        tempered = dis.estimate_accuracy(heads, posterior, heads[0], labels, HEADS)
        assert given.accuracy < tempered.accuracy < 0.9
        return tempered.accuracy - given.accuracy

    hedged = rise(probs)
    assert hedged > 0.08
    # The same labels where the head was sure when right: they say less about its doubt
    # elsewhere, and the sharpened readings move the estimate less.
    sure = probs.copy()
    for row in (1, 2, 3, 4):
        sure[0, row] = np.where(np.arange(2) == kept_classes[row], 0.99, 0.01)
    assert rise(sure) < hedged - 0.02


def test_the_label_loop_asks_within_budget_and_keeps_the_head_the_labels_name():
    probs = heads_from_predictions(TRUTH, HEAD1)
    asked, seen = [], []

    def ask(row):
        asked.append(row)
        return int(TRUTH[row])

    out = dis.resolve(probs, ask, budget=3, rng=np.random.default_rng(0), default_score=0.8,
                      on_label=lambda count, row, label, post: seen.append((count, row, label)))
    assert [row for row, _ in out.queries] == asked and len(asked) == 3
    assert asked[0] == 6 and asked[1] in (8, 9)  # both kinds of disagreement first
    assert [count for count, _, _ in seen] == [1, 2, 3]
    assert out.chosen_head == 0 and len(out.posteriors) == 4
    assert out.posteriors[-1][0] > 0.99
    assert (out.chosen_head, out.estimate, out.decision) == dis.conclude(
        probs, out.posteriors[-1], dict(out.queries), 0.8)


def test_the_label_loop_uses_known_labels_first_and_stops_when_told():
    probs = heads_from_predictions(TRUTH, HEAD1)
    out = dis.resolve(probs, lambda row: None, budget=5, rng=np.random.default_rng(0),
                      default_score=0.8, known={6: 0})
    assert out.queries == [(6, 0)] and len(out.posteriors) == 2  # prior, after the known label
    assert out.chosen_head == 0
    # the budget counts the known labels
    out = dis.resolve(probs, lambda row: int(TRUTH[row]), budget=2,
                      rng=np.random.default_rng(0), default_score=0.8, known={6: 0})
    assert len(out.queries) == 2 and out.queries[0] == (6, 0)
