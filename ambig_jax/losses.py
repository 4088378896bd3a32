"""Pure losses of the diverse ensemble. Shapes: H heads, B samples, C classes.

Every function takes arrays only (no config) and returns a scalar or a small array; all are
finite, with finite gradients, at saturated probabilities (exact 0 and 1).
"""

import jax
import jax.numpy as jnp
import optax


def _entropy_term(p: jax.Array) -> jax.Array:
    """Elementwise p * log p with 0 log 0 = 0 and a finite (zero) gradient at p = 0.

    `jax.scipy.special.xlogy(p, p)` has the right value but a NaN gradient at 0; the double
    `where` keeps both value and gradient finite.
    """
    positive = p > 0
    return jnp.where(positive, p * jnp.log(jnp.where(positive, p, 1.0)), 0.0)


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """Mean cross-entropy per head, with optional label smoothing.

    Args:
      logits: [H, B, C].
      labels: [B] int class indices, shared by all heads; or [H, B], each head's own, where a
        negative index marks a row that head does not learn (students of several teachers).
      smoothing: eps; the target is (1 - eps) one_hot + eps / C.

    Returns:
      [H] mean over the batch (over the rows it learns) of
      -sum_c target_c log softmax(logits)_c; 0 for a head that learns no row of the batch.
    """
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    if labels.ndim == 1:
        return -(targets[None] * jax.nn.log_softmax(logits, axis=-1)).sum(-1).mean(axis=-1)
    per_row = -(targets * jax.nn.log_softmax(logits, axis=-1)).sum(-1)  # [H, B]
    learned = labels >= 0
    return jnp.where(learned, per_row, 0.0).sum(-1) / jnp.maximum(learned.sum(-1), 1)


def pairwise_joint(probs_a: jax.Array, probs_b: jax.Array) -> jax.Array:
    """Empirical joint distribution of the classes of two sets of heads on one batch.

    Args:
      probs_a: [H, B, C]; probs_b: [G, B, C].

    Returns:
      [H, G, C, C]: joint[h, g, i, j] = mean_b probs_a[h, b, i] * probs_b[g, b, j].
    """
    return jnp.einsum("hbi,gbj->hgij", probs_a, probs_b) / probs_a.shape[1]


def mutual_information_matrix(probs_a: jax.Array, probs_b: jax.Array) -> jax.Array:
    """Mutual information (nats) between every head of `probs_a` and every head of `probs_b`.

    For heads h and g with batch joint P = pairwise_joint(...)[h, g] and marginals p = P.sum(1),
    q = P.sum(0): I = sum_ij P_ij log(P_ij / (p_i q_j)) = -H(P) + H(p) + H(q) >= 0.

    Args:
      probs_a: [H, B, C]; probs_b: [G, B, C].

    Returns:
      [H, G] mutual information; the diagonal of (probs, probs) holds each head's entropy of
      its mean prediction.
    """
    joint = pairwise_joint(probs_a, probs_b)
    neg_joint_entropy = _entropy_term(joint).sum(axis=(-1, -2))
    neg_entropy_a = _entropy_term(joint.sum(axis=-1)).sum(axis=-1)
    neg_entropy_b = _entropy_term(joint.sum(axis=-2)).sum(axis=-1)
    return jnp.maximum(neg_joint_entropy - neg_entropy_a - neg_entropy_b, 0.0)


def _pair_mask(num_heads: int) -> jax.Array:
    """[H, H] float mask of the pairs (h, g) with g < h."""
    return jnp.tril(jnp.ones((num_heads, num_heads)), k=-1)


def _mean_over_pairs(matrix: jax.Array) -> jax.Array:
    num_heads = matrix.shape[0]
    if num_heads < 2:
        return jnp.zeros((), matrix.dtype)
    mask = _pair_mask(num_heads)
    return (matrix * mask).sum() / mask.sum()


def mutual_information(probs: jax.Array) -> jax.Array:
    """DivDis diversity: mean over head pairs h < g of the batch mutual information.

    Args:
      probs: [H, B, C] predicted class probabilities of H heads on one unlabeled batch.

    Returns:
      Scalar in nats; 0 for fewer than 2 heads. Two identical confident balanced binary heads
      give log 2; two heads independent on the batch give 0.
    """
    return _mean_over_pairs(mutual_information_matrix(probs, probs))


def _mean_over_edges(values: jax.Array, edges: jax.Array) -> jax.Array:
    """[H, H] values and 0/1 edges -> [H]: mean of values[h, g] over the edges of h, the
    diagonal ignored (0 for a head without edges)."""
    edges = edges * (1.0 - jnp.eye(edges.shape[0]))
    return (values * edges).sum(axis=1) / jnp.maximum(edges.sum(axis=1), 1.0)


def directed_mutual_information(probs: jax.Array, edges: jax.Array) -> jax.Array:
    """Per head h: mean over its edges (h, g) of I(head h; frozen head g).

    The other head enters through `stop_gradient`, so an edge (h, g) moves head h only. Edges
    both ways between h and g give the gradient of the symmetric I(h; g) (DivDis); edges g < h
    only give D-BAT's sequential ordering (head 0 plain ERM, head 1 independent of head 0, ...).

    Args:
      probs: [H, B, C] pool probabilities.
      edges: [H, H] 0/1; edges[h, g] = 1 pushes head h away from head g. Diagonal ignored.

    Returns:
      [H] in nats; 0 for a head without edges.
    """
    mi = mutual_information_matrix(probs, jax.lax.stop_gradient(probs))
    return _mean_over_edges(mi, edges)


def directed_disagreement(probs: jax.Array, edges: jax.Array) -> jax.Array:
    """D-BAT loss per head h: mean over its edges (h, g) of -log P(h and frozen g disagree).

    For one sample, P(disagree) = 1 - sum_c p_h(c) p_g(c); in the binary case this is D-BAT's
    -log(p_h(0) p_g(1) + p_h(1) p_g(0)). The agreement is clipped below 1 so that two
    saturated, agreeing heads give a large finite loss.

    Args:
      probs: [H, B, C]; edges: [H, H] 0/1 as in `directed_mutual_information`.

    Returns:
      [H], mean over the batch; 0 for a head without edges.
    """
    agree = jnp.einsum("hbc,gbc->hgb", probs, jax.lax.stop_gradient(probs))
    loss = -jnp.log1p(-jnp.clip(agree, 0.0, 1.0 - 1e-6)).mean(axis=-1)
    return _mean_over_edges(loss, edges)


def prior_kl(probs: jax.Array, prior: jax.Array) -> jax.Array:
    """Per head, KL(prior || mean prediction of the head on the batch).

    Keeps each head's class balance on unlabeled data near a prior, as in DivDis: the labeled
    rows' class frequencies, or per head its own (a head that sees one block: that block's
    balance on the target, `blocks.BlockTest.head_priors`).

    Args:
      probs: [H, B, C]; prior: [C] class frequencies, or [H, C] one per head.

    Returns:
      [H], each >= 0.
    """
    mean = probs.mean(axis=1)
    log_ratio = jnp.log(jnp.where(prior > 0, prior, 1.0)) - jnp.log(jnp.maximum(mean, 1e-30))
    return jnp.where(prior > 0, prior * log_ratio, 0.0).sum(axis=-1)
