import dataclasses
import os
import pathlib
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ambig_jax import losses
from ambig_jax import models
from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets import catalog
from ambig_jax.datasets import loader
from tests.conftest import generated

ROOT = pathlib.Path(__file__).resolve().parents[1]


def as_dataset(g):
    return loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                              g.x["target"])


def test_diversity_edges():
    np.testing.assert_array_equal(training.diversity_edges("erm", 3), np.zeros((3, 3)))
    np.testing.assert_array_equal(training.diversity_edges("divdis", 2), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(training.diversity_edges("seqmi", 3),
                                  [[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(training.diversity_edges("hybrid", 2), [[0, 0], [1, 0]])
    hybrid = training.diversity_edges("hybrid", 5)
    expected = np.zeros((5, 5))
    expected[1, 0] = expected[2, 1] = expected[3, 4] = expected[4, 3] = 1
    np.testing.assert_array_equal(hybrid, expected)


def test_the_chain_weight_weighs_the_hybrid_chain_links_only():
    config = Config(strategy="hybrid", num_heads=6, diversity_weight=2.0, chain_weight=3.0)
    # head 0 (the anchor) has no edge; heads 1-3 are links; 4 and 5 the joint pair
    np.testing.assert_allclose(training.diversity_weights(config), [2, 6, 6, 6, 2, 2])
    np.testing.assert_allclose(training.diversity_weights(config.replace(num_heads=2)), [2, 6])
    for strategy in ("seqmi", "dbat", "divdis"):  # D-BAT's and DivDis's own weighting
        np.testing.assert_allclose(
            training.diversity_weights(config.replace(strategy=strategy)), [2] * 6)
    with pytest.raises(ValueError, match="chain_weight"):
        Config(chain_weight=-1.0)


def test_the_erm_anchor_is_head_zero_of_the_strategies_that_push_the_others():
    assert training.has_anchor(Config(strategy="hybrid"))
    assert training.has_anchor(Config(strategy="seqmi", num_heads=2))
    assert training.has_anchor(Config(strategy="dbat"))
    assert not training.has_anchor(Config(strategy="divdis"))
    assert not training.has_anchor(Config(strategy="erm"))
    assert not training.has_anchor(Config(strategy="hybrid", num_heads=1))


# jitted: one compilation each, rather than the ops one by one
_init = jax.jit(models.init_ensemble, static_argnums=(0, 2, 3))
_apply = jax.jit(models.ensemble_apply, static_argnums=0)


@pytest.mark.parametrize("kind,shape", [
    ("mlp", (99,)), ("mlp", (1, 28, 56)),
    pytest.param("conv", (1, 28, 56), marks=pytest.mark.slow),  # conv compiles slowly on CPU
    pytest.param("conv", (3, 32, 64), marks=pytest.mark.slow)])
def test_ensemble_shapes(kind, shape):
    module = models.make_backbone(shape, 3, kind, hidden=(16,))
    params = _init(module, jax.random.key(0), 4, shape)
    for leaf in jax.tree.leaves(params):
        assert leaf.shape[0] == 4
    logits = _apply(module, params, jnp.zeros((5,) + shape))
    chex.assert_shape(logits, (4, 5, 3))


def test_members_differ_at_init():
    module = models.make_backbone((2,), 2)
    params = _init(module, jax.random.key(0), 2, (2,))
    logits = _apply(module, params, jax.random.normal(jax.random.key(1), (8, 2)))
    assert not np.allclose(logits[0], logits[1])


def test_standardizer_floors_quiet_features():
    x = np.stack([np.random.default_rng(0).normal(0, 1, 100), np.full(100, 3.0)], axis=1)
    std = models.Standardizer.fit(x)
    out = std(x)
    assert abs(out[:, 0].std() - 1.0) < 0.05
    np.testing.assert_allclose(out[:, 1], 0.0)  # constant feature: centred, not divided by 0
    assert np.isfinite(out).all()


def test_step_compiles_once():
    ds = as_dataset(generated(0))
    config = Config(num_heads=2, batch_labeled=8, batch_pool=16)
    module = models.make_backbone(ds.input_shape, 2)
    optimizer = optax.adam(1e-3)
    params = models.init_ensemble(module, jax.random.key(0), 2, ds.input_shape)
    state = training.TrainState(params=params, opt_state=optimizer.init(params),
                                step=jnp.zeros((), jnp.int32))
    step = jax.jit(chex.assert_max_traces(training.make_step(module, optimizer, config), n=1))
    data = training.TrainData(
        x_labeled=jnp.asarray(ds.x_labeled), y_labeled=jnp.asarray(ds.y_labeled),
        num_labeled=jnp.int32(len(ds.y_labeled)), x_pool=jnp.asarray(ds.x_target),
        num_pool=jnp.int32(len(ds.x_target)), prior=jnp.array([0.5, 0.5]))
    for i in range(3):
        state, metrics = step(state, jax.random.key(i), data)
    chex.assert_tree_all_finite(metrics)
    chex.assert_shape(metrics["labeled_accuracy"], (2,))
    assert int(state.step) == 3


def test_non_finite_loss_names_step_and_term():
    metrics = {name: np.zeros(5) for name in training.METRIC_NAMES}
    metrics["diversity"][3] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite diversity loss at step 3"):
        training.check_finite(metrics)


@pytest.mark.slow
def test_toy_divdis_finds_both_features():
    g = generated(0)
    ds = as_dataset(g)
    ens = training.train(Config(strategy="divdis", num_heads=2, pool="target", steps=1500), ds)
    labeled = ens.predict_proba(ds.x_labeled).argmax(-1)
    assert (labeled == ds.y_labeled[None]).mean(axis=1).min() >= 0.98
    target = ens.predict_proba(ds.x_target).argmax(-1)
    x1_rule = (g.x["target"][:, 0] < 0).astype(int)
    x2_rule = (g.x["target"][:, 1] > 0).astype(int)
    follows_x1 = (target == x1_rule[None]).mean(axis=1)
    follows_x2 = (target == x2_rule[None]).mean(axis=1)
    assert max(follows_x1) >= 0.9 and max(follows_x2) >= 0.9
    assert np.argmax(follows_x1) != np.argmax(follows_x2)
    assert 0.35 <= (target[0] != target[1]).mean() <= 0.65


def test_each_head_can_hold_its_own_prior():
    """`priors` [H, C]: the default is the labeled rows' balance for every head, exactly; a
    pushed head held to another balance predicts the target closer to it; anchors have no
    prior term; a prior of the wrong shape is refused."""
    ds = as_dataset(generated(0))
    config = Config(strategy="hybrid", num_heads=3, steps=100, hidden=(16,), batch_pool=128)
    default = training.train(config, ds, jax.random.key(0))
    labeled = np.tile(training.labeled_prior(ds), (3, 1))
    np.testing.assert_allclose(training.labeled_prior(ds), np.bincount(ds.y_labeled) / len(
        ds.y_labeled))
    np.testing.assert_allclose(default.priors, labeled, rtol=1e-6)
    explicit = training.train(config, ds, jax.random.key(0), priors=labeled)
    np.testing.assert_array_equal(explicit.predict_proba(ds.x_target),
                                  default.predict_proba(ds.x_target))
    tilted = labeled.copy()
    tilted[:] = [0.9, 0.1]  # far from the toy target's balance, for every head
    held = training.train(config, ds, jax.random.key(0), priors=tilted)
    np.testing.assert_allclose(held.priors, tilted, rtol=1e-6)
    before, after = (e.predict_proba(ds.x_target)[:, :, 0].mean(axis=1) for e in (default, held))
    assert after[0] == pytest.approx(before[0], abs=1e-6)  # head 0, the ERM anchor: no prior
    assert np.all(after[1:] > before[1:] + 0.02), (before, after)  # the pair heads: class 0
    with pytest.raises(ValueError, match="priors must be"):
        training.train(config, ds, jax.random.key(0), priors=labeled[:2])


def test_a_heavier_chain_weight_moves_the_link_alone_towards_independence():
    """The anchor and the joint pair train bit for bit as before; the link (head 1) ends less
    dependent on the anchor on the target rows."""
    ds = as_dataset(generated(0))
    config = Config(strategy="hybrid", num_heads=4, steps=100, hidden=(16,), batch_pool=128)
    light, heavy = (training.train(config.replace(chain_weight=w), ds, jax.random.key(0))
                    .predict_proba(ds.x_target) for w in (1.0, 3.0))
    np.testing.assert_array_equal(heavy[[0, 2, 3]], light[[0, 2, 3]])
    dependence = [float(losses.mutual_information_matrix(p, p)[1, 0]) for p in (light, heavy)]
    assert dependence[1] < 0.9 * dependence[0], dependence


@pytest.mark.slow
def test_training_is_deterministic():
    ds = as_dataset(generated(0))
    config = Config(num_heads=2, steps=50)
    a = training.train(config, ds).predict_proba(ds.x_target)
    b = training.train(config, ds).predict_proba(ds.x_target)
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sharded_heads_match_single_device(tmp_path):
    """The same run on 4 fake CPU devices (heads sharded) and on one gives the same heads."""
    script = textwrap.dedent("""
        import sys, numpy as np, jax
        from ambig_jax import training
        from ambig_jax.config import Config
        from ambig_jax.datasets import generator, loader
        g = generator.generate(0, 0)
        ds = loader.from_arrays(g.info, g.x["labeled"], g.y["labeled"], g.x["unlabeled"],
                                g.x["target"])
        config = Config(num_heads=4, steps=100)
        assert (training.head_mesh(4) is not None) == (jax.device_count() == 4)
        np.save(sys.argv[1], training.train(config, ds).predict_proba(ds.x_target))
    """)
    results = []
    for devices in (1, 4):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
        out = tmp_path / f"probs{devices}.npy"
        subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, cwd=ROOT)
        results.append(np.load(out))
    np.testing.assert_allclose(results[0], results[1], atol=1e-4)


def test_runs_of_the_same_shapes_share_one_compilation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    ds = loader.from_arrays(catalog.CATALOG[0], x, (x[:, 0] > 0).astype(int), x[:32], x[32:])
    config = Config(strategy="erm", num_heads=1, steps=7, hidden=(8,), seed=11)
    first = training.train(config, ds)
    again = training.train(config.replace(seed=12, budget=2), ds)  # no new compilation
    assert again.compile_seconds < first.compile_seconds / 5
    assert not np.allclose(first.predict_proba(x), again.predict_proba(x))  # another seed
    repeat = training.train(config, ds)
    np.testing.assert_array_equal(first.predict_proba(x), repeat.predict_proba(x))
    longer = training.train(config.replace(steps=8), ds)  # another program: compiled anew
    assert longer.compile_seconds > again.compile_seconds


def test_bucket_rows_are_powers_of_two_from_64():
    assert [training.bucket_rows(n) for n in (0, 1, 64, 65, 1135, 1267, 2048, 2049)] == \
        [64, 64, 64, 128, 2048, 2048, 2048, 4096]


def _small_set(rows: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5)).astype(np.float32)
    half = rows // 2
    return loader.from_arrays(catalog.CATALOG[0], x[:half], (x[:half, 0] > 0).astype(int),
                              x[half:], x[half:])


def test_padding_rows_are_never_drawn(monkeypatch):
    """Padding to a bucket leaves a run's result as it was: batches are drawn from the real
    rows only (zero rows of class 0, if drawn, would move the heads)."""
    ds = _small_set(70)
    config = Config(strategy="divdis", num_heads=2, steps=30, hidden=(8,))
    padded = training.train(config, ds).predict_proba(ds.x_target)
    monkeypatch.setattr(training, "bucket_rows", lambda rows: rows)  # no padding at all
    exact = training.train(config, ds).predict_proba(ds.x_target)
    np.testing.assert_allclose(padded, exact, atol=1e-6)


def test_sets_of_sizes_in_one_bucket_share_a_compilation():
    config = Config(num_heads=2, steps=9, hidden=(8,), batch_labeled=16, batch_pool=16)
    first = training.train(config, _small_set(100))  # 50 labeled rows, 50 pool rows
    second = training.train(config, _small_set(120, seed=4))  # 60 and 60: the same bucket
    assert second.compile_seconds < first.compile_seconds / 5
    third = training.train(config, _small_set(140))  # 70 and 70: the next bucket
    assert third.compile_seconds > second.compile_seconds


def test_unsmooth_restores_the_ceiling():
    smoothed = np.array([[0.95, 0.05], [0.5, 0.5]])
    np.testing.assert_allclose(training.unsmooth(smoothed, 0.1), [[1.0, 0.0], [0.5, 0.5]],
                               atol=1e-6)
    np.testing.assert_array_equal(training.unsmooth(smoothed, 0.0), smoothed)


def test_pair_swapped_matches_heads_by_agreement():
    reference = np.array([[0, 1, 0, 1, 1], [0, 0, 1, 1, 0]])
    assert not training.pair_swapped(reference, reference)
    assert training.pair_swapped(reference, reference[::-1])
    noisy = reference[::-1].copy()
    noisy[0, 0], noisy[1, 1] = 1, 1
    assert training.pair_swapped(reference, noisy)


def test_a_replicated_pair_is_the_mean_of_its_matched_starts():
    ds = as_dataset(generated(0))
    config = Config(num_heads=4, steps=100, hidden=(16,), batch_pool=128)
    ensemble = training.train(config, ds, jax.random.key(1))
    assert training.replicate_pair(ensemble, ds, jax.random.key(2), 1, (2, 3)) is ensemble
    replicated = training.replicate_pair(ensemble, ds, jax.random.key(2), 3, (2, 3))
    assert len(replicated.replicas) == 2 and replicated.replicated == (2, 3)
    assert replicated.train_seconds > ensemble.train_seconds
    single = ensemble.predict_proba(ds.x_target)
    probs = replicated.predict_proba(ds.x_target)
    np.testing.assert_array_equal(probs[:2], single[:2])  # the chain is left alone
    starts = [single[2:]] + [replica.predict_proba(ds.x_target)[::-1 if swap else 1]
                             for replica, swap in zip(replicated.replicas, replicated.swapped)]
    for start in starts[1:]:  # matched: each head agrees most with its counterpart
        assert not training.pair_swapped(single[2:].argmax(-1), start.argmax(-1))
    # the start that agrees least with the other two is left out of the mean
    dropped = training.least_agreeing(np.stack([start.argmax(-1) for start in starts]))
    assert replicated.averaged == tuple(r for r in range(3) if r != dropped)
    np.testing.assert_allclose(probs[2:], np.mean([starts[r] for r in replicated.averaged], 0),
                               rtol=1e-6)
    np.testing.assert_allclose(replicated.calibrated_proba(ds.x_target).sum(-1), 1.0, rtol=1e-5)
    every = training.replicate_pair(
        dataclasses.replace(ensemble, config=config.replace(pair_drop_outlier=False)), ds,
        jax.random.key(2), 3, (2, 3))
    assert every.averaged == (0, 1, 2)
    np.testing.assert_allclose(every.predict_proba(ds.x_target)[2:], np.mean(starts, axis=0),
                               rtol=1e-5)


def test_least_agreeing_is_the_start_the_others_disagree_with():
    pair = np.array([[0, 1, 0, 1, 1, 0], [0, 0, 1, 1, 0, 1]])
    near = pair.copy()
    near[0, 0] = 1
    far = pair.copy()
    far[:, :3] = 1 - far[:, :3]
    assert training.least_agreeing(np.stack([pair, near, far])) == 2
    assert training.least_agreeing(np.stack([far, pair, near])) == 0


def test_training_in_stages_continues_one_run():
    """Each stage continues the run: the last is `train`'s result exactly, an early stage's
    parameters survive the later ones (the scan donates its state), and stages that do not
    fall on chunk boundaries are refused."""
    toy_dataset = as_dataset(generated(0))
    config = Config(strategy="erm", num_heads=1, steps=40, hidden=(16,))
    stages = training.stages_of(40, (0.25,))
    assert stages == (10, 40) and training.stages_of(1500, (0.25,)) == (360, 1500)
    early, last = training.train_in_stages(config, toy_dataset, jax.random.key(1), stages)
    whole = training.train(config, toy_dataset, jax.random.key(1))
    x = toy_dataset.x_target[:50]
    np.testing.assert_allclose(last.predict_proba(x), whole.predict_proba(x), atol=1e-6)
    assert not np.allclose(early.predict_proba(x), last.predict_proba(x), atol=1e-3)
    assert last.train_seconds >= early.train_seconds
    with pytest.raises(ValueError, match="stages must increase to steps=40"):
        next(training.train_in_stages(config, toy_dataset, None, (50, 40)))
