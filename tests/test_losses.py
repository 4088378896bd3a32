import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from jax.test_util import check_grads

from ambig_jax import losses

LOG2 = float(np.log(2.0))


def one_hot_heads(*labels, num_classes=2):
    """[H, B, C] confident heads from their class sequences."""
    return jax.nn.one_hot(jnp.asarray(labels), num_classes)


class MutualInformationTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_identical_confident_balanced_heads_give_log2(self):
        probs = one_hot_heads([0, 1, 0, 1], [0, 1, 0, 1])
        np.testing.assert_allclose(self.variant(losses.mutual_information)(probs), LOG2, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_independent_heads_give_zero(self):
        probs = one_hot_heads([0, 0, 1, 1], [0, 1, 0, 1])
        np.testing.assert_allclose(self.variant(losses.mutual_information)(probs), 0.0, atol=1e-7)

    def test_complementary_heads_are_fully_dependent(self):
        probs = one_hot_heads([0, 0, 1, 1], [1, 1, 0, 0])
        np.testing.assert_allclose(losses.mutual_information(probs), LOG2, rtol=1e-6)

    def test_hand_computed_soft_value(self):
        # Joint of two soft heads on 2 samples: P = [[0.5*.8*.6 + .5*.3*.1, ...]] computed by hand.
        a = jnp.array([[0.8, 0.2], [0.3, 0.7]])
        b = jnp.array([[0.6, 0.4], [0.1, 0.9]])
        joint = 0.5 * (a[0][:, None] * b[0][None] + a[1][:, None] * b[1][None])
        p, q = joint.sum(1), joint.sum(0)
        expected = float((joint * np.log(joint / (p[:, None] * q[None]))).sum())
        np.testing.assert_allclose(losses.mutual_information(jnp.stack([a, b])), expected, rtol=1e-5)

    def test_nonnegative_and_symmetric(self):
        keys = jax.random.split(jax.random.key(0), 20)
        for key in keys:
            probs = jax.nn.softmax(3.0 * jax.random.normal(key, (3, 16, 3)))
            mi = losses.mutual_information_matrix(probs, probs)
            self.assertTrue(bool(jnp.all(mi >= 0.0)))
            np.testing.assert_allclose(mi, mi.T, atol=1e-6)
            np.testing.assert_allclose(losses.mutual_information(probs),
                                       losses.mutual_information(probs[::-1]), rtol=1e-4, atol=1e-6)

    def test_shapes(self):
        # jitted, so each function compiles once rather than op by op
        probs = jax.nn.softmax(jax.random.normal(jax.random.key(1), (4, 8, 3)))
        edges = jnp.tril(jnp.ones((4, 4)), k=-1)
        shapes = jax.jit(lambda p: {
            "joint": losses.pairwise_joint(p, p[:2]),
            "matrix": losses.mutual_information_matrix(p, p[:2]),
            "mi": losses.mutual_information(p),
            "directed": losses.directed_mutual_information(p, edges),
            "dbat": losses.directed_disagreement(p, edges),
            "prior": losses.prior_kl(p, jnp.array([0.2, 0.3, 0.5])),
            "ce": losses.cross_entropy(jnp.log(p), jnp.zeros(8, jnp.int32))})(probs)
        chex.assert_shape(shapes["joint"], (4, 2, 3, 3))
        chex.assert_shape(shapes["matrix"], (4, 2))
        chex.assert_shape(shapes["mi"], ())
        chex.assert_shape([shapes["directed"], shapes["dbat"], shapes["prior"], shapes["ce"]],
                          (4,))
        self.assertEqual(float(losses.mutual_information(probs[:1])), 0.0)

    def test_gradients_finite_at_saturated_probabilities(self):
        logits = jnp.array([[[100.0, -100.0], [-100.0, 100.0]], [[100.0, -100.0], [100.0, -100.0]]])
        edges = jnp.ones((2, 2))
        for fn in (lambda l: losses.mutual_information(jax.nn.softmax(l)),
                   lambda l: losses.directed_mutual_information(jax.nn.softmax(l), edges).sum(),
                   lambda l: losses.directed_disagreement(jax.nn.softmax(l), edges).sum(),
                   lambda l: losses.prior_kl(jax.nn.softmax(l), jnp.array([0.5, 0.5])).sum()):
            chex.assert_tree_all_finite(jax.jit(jax.grad(fn))(logits))
        exact = one_hot_heads([0, 1], [1, 1])  # probabilities exactly 0 and 1
        chex.assert_tree_all_finite(jax.grad(losses.mutual_information)(exact))
        chex.assert_tree_all_finite(losses.mutual_information(exact))

    def test_check_grads_interior(self):
        logits = jax.random.normal(jax.random.key(2), (3, 6, 2))
        check_grads(jax.jit(lambda l: losses.mutual_information(jax.nn.softmax(l))), (logits,),
                    order=1, modes=["rev"], eps=1e-2, atol=5e-3, rtol=5e-3)
        labels = jnp.array([0, 1, 1, 0, 1, 0])
        check_grads(jax.jit(lambda l: losses.cross_entropy(l, labels).sum()),
                    (logits,), order=1, modes=["rev"], eps=1e-2, atol=5e-3, rtol=5e-3)


class DirectedLossesTest(chex.TestCase):

    def test_directed_mi_moves_only_the_later_head(self):
        logits = jax.random.normal(jax.random.key(3), (2, 32, 2))
        edges = jnp.array([[0.0, 0.0], [1.0, 0.0]])
        grads = jax.grad(lambda l: losses.directed_mutual_information(
            jax.nn.softmax(l), edges).sum())(logits)
        self.assertEqual(float(jnp.abs(grads[0]).max()), 0.0)
        self.assertGreater(float(jnp.abs(grads[1]).max()), 0.0)

    def test_edges_both_ways_give_the_symmetric_gradient(self):
        logits = jax.random.normal(jax.random.key(4), (2, 32, 2))
        both = jnp.ones((2, 2))
        directed = jax.grad(lambda l: losses.directed_mutual_information(
            jax.nn.softmax(l), both).sum())(logits)
        joint = jax.grad(lambda l: losses.mutual_information(jax.nn.softmax(l)))(logits)
        np.testing.assert_allclose(directed, joint, rtol=1e-4, atol=1e-7)

    def test_dbat_matches_binary_formula(self):
        p1 = jnp.array([[0.9, 0.1], [0.2, 0.8]])
        p2 = jnp.array([[0.3, 0.7], [0.6, 0.4]])
        expected = -np.mean(np.log(p1[:, 0] * p2[:, 1] + p1[:, 1] * p2[:, 0]))
        value = losses.directed_disagreement(jnp.stack([p2, p1]), jnp.array([[0.0, 0.0], [1.0, 0.0]]))
        np.testing.assert_allclose(value, [0.0, expected], rtol=1e-5)

    def test_prior_kl(self):
        probs = jnp.array([[[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [1.0, 0.0]]])
        value = losses.prior_kl(probs, jnp.array([0.5, 0.5]))
        np.testing.assert_allclose(value[0], 0.0, atol=1e-7)
        self.assertGreater(float(value[1]), 10.0)  # a head that never predicts class 1

    def test_label_smoothing(self):
        logits = jnp.log(jnp.array([[[0.9, 0.1]]]))
        np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([0])), [-np.log(0.9)],
                                   rtol=1e-6)
        smoothed = losses.cross_entropy(logits, jnp.array([0]), 0.2)
        np.testing.assert_allclose(smoothed, [-(0.9 * np.log(0.9) + 0.1 * np.log(0.1))], rtol=1e-5)

    def test_each_head_its_own_labels_and_rows(self):
        # head 0 learns rows 0 and 1, head 1 rows 1 and 2; a row marked -1 is not learned
        logits = jnp.log(jnp.array([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]],
                                    [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6]]]))
        labels = jnp.array([[0, 1, -1], [-1, 0, 1]])
        np.testing.assert_allclose(
            losses.cross_entropy(logits, labels),
            [-(np.log(0.9) + np.log(0.8)) / 2, -(np.log(0.3) + np.log(0.6)) / 2], rtol=1e-6)
        # labels shared by every head give the shared form's value; no row learned gives 0
        shared = jnp.array([0, 1, 1])
        np.testing.assert_allclose(losses.cross_entropy(logits, jnp.stack([shared, shared]), 0.2),
                                   losses.cross_entropy(logits, shared, 0.2), rtol=1e-6)
        np.testing.assert_allclose(losses.cross_entropy(logits, jnp.full((2, 3), -1)), [0, 0])


if __name__ == "__main__":
    absltest.main()
