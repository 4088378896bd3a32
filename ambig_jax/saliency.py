"""What each head looks at, per predicted class: input gradients and occlusion.

Shapes: H heads, B rows, C classes, S the input's shape. Two maps, both averaged over the rows
a head assigns to a class:
  gradient: |d log p_h(c | x) / d x| with respect to the standardised input the heads see.
    Cheap and classic, but on an MLP it mostly shows the first layer's random initial weights
    on pixels the decision ignores (docs/saliency.md has set 01's figures).
  occlusion: the drop of log p_h(c | x) when one patch of x is replaced by the same patch of
    another row. It measures what the decision depends on: a head keeps its predictions when
    the half it ignores is swapped, and flips about half of them when the other is.
"""

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np

from ambig_jax import training


def input_gradients(module, params, x: jax.Array, masks=None) -> jax.Array:
    """[H, B, C, *S] d log p_h(c | x_b) / d x_b for every head h, row b and class c (0 on the
    inputs a head's mask hides, `blocks`).

    Rows are independent, so each row's Jacobian is taken on its own (vmapped over rows and
    over the heads' stacked parameters).
    """
    def one_head(head_params, mask):
        def log_probs(row):  # [*S] -> [C]
            return jax.nn.log_softmax(module.apply(head_params, (row * mask)[None])[0])
        return jax.vmap(jax.jacrev(log_probs))(x)

    if masks is None:
        masks = jnp.ones((jax.tree.leaves(params)[0].shape[0],) + x.shape[1:], x.dtype)
    return jax.vmap(one_head)(params, masks)


_jitted_gradients = jax.jit(input_gradients, static_argnums=0)


GRADIENT_ROWS = 256  # rows a gradient map averages by default: a few hundred suffice


def gradient_saliency(ensemble: training.TrainedEnsemble, x: np.ndarray,
                      max_rows: int = GRADIENT_ROWS,
                      batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Mean |gradient| per head and predicted class, on at most `max_rows` rows of x.

    Args:
      ensemble: the trained heads.
      x: [N, *S] raw inputs (the target set, say).
      max_rows: rows used (the first ones); saliency is an average, a few hundred suffice.
      batch_size: rows per compiled call (the Jacobian holds H * C gradients per row).

    Returns:
      maps: [H, C, *S] mean over the rows head h predicts as c of |d log p_h(c | x) / d x|
        (zeros where a head never predicts c); a pair averaged over several starts
        (`training.replicate_pair`) gets the mean of its starts' maps, each start's over the
        rows it predicts as c; an anchor replaced by its student (`Config.anchor_student`)
        gets the student's map, and a joint pair that stands for its students
        (`Config.block_students`) theirs.
      counts: [H, C] how many rows each map averages.
    """
    students = [(student, heads) for student, heads in (
        (ensemble.anchor_student, [0]),
        (ensemble.pair_students, list(training.joint_pair(ensemble.config) or ())))
        if student is not None]
    if students:
        maps, counts = gradient_saliency(
            dataclasses.replace(ensemble, anchor_student=None, pair_students=None), x, max_rows,
            batch_size)
        for student, heads in students:
            student_maps, student_counts = gradient_saliency(student, x, max_rows, batch_size)
            maps[heads], counts[heads] = student_maps, student_counts
        return maps, counts
    if ensemble.replicas:
        return _replicated_saliency(ensemble, x, max_rows, batch_size)
    rows = ensemble.standardizer(np.asarray(x[:max_rows], np.float32))
    grads = np.concatenate([
        np.asarray(_jitted_gradients(ensemble.module, ensemble.params,
                                     jnp.asarray(rows[i:i + batch_size]), ensemble.masks))
        for i in range(0, len(rows), batch_size)], axis=1)  # [H, B, C, *S]
    num_heads, _, num_classes = grads.shape[:3]
    predicted = ensemble.predict_proba(x[:max_rows]).argmax(-1)  # [H, B]
    maps = np.zeros((num_heads, num_classes) + grads.shape[3:], np.float32)
    counts = np.zeros((num_heads, num_classes), int)
    for h in range(num_heads):
        for c in range(num_classes):
            chosen = predicted[h] == c
            counts[h, c] = int(chosen.sum())
            if counts[h, c]:
                maps[h, c] = np.abs(grads[h, chosen, c]).mean(axis=0)
    return maps, counts


def _replicated_saliency(ensemble: training.TrainedEnsemble, x: np.ndarray, max_rows: int,
                         batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`gradient_saliency` of an ensemble whose pair is averaged over starts: the pair's maps
    are the mean of its starts' (matched), the counts the averaged heads' predictions'."""
    first = dataclasses.replace(ensemble, replicas=(), replicated=None, swapped=(),
                                averaged=())
    maps, _ = gradient_saliency(first, x, max_rows, batch_size)
    maps[list(ensemble.replicated)] = ensemble.mean_of_starts(
        maps, lambda replica: gradient_saliency(replica, x, max_rows, batch_size)[0])
    predicted = ensemble.predict_proba(x[:max_rows]).argmax(-1)  # [H, B]
    counts = np.stack([np.bincount(p, minlength=maps.shape[1]) for p in predicted])
    return maps, counts


def _patches(shape: tuple[int, ...], patch: int):
    """Index tuples (over one row's axes) that tile `shape`: square patches over the last two
    axes of an image (all channels together), runs of features of a vector."""
    if len(shape) == 1:
        width = max(1, -(-shape[0] // 128))  # at most 128 groups
        return [(slice(i, i + width),) for i in range(0, shape[0], width)]
    lead = tuple(slice(None) for _ in shape[:-2])
    return [lead + (slice(i, i + patch), slice(j, j + patch))
            for i in range(0, shape[-2], patch) for j in range(0, shape[-1], patch)]


def occlusion_saliency(ensemble: training.TrainedEnsemble, x: np.ndarray, patch: int = 4,
                       max_rows: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean drop of the predicted class's log-probability when a patch is resampled.

    Each patch of each row is replaced by the same patch of another row (a fixed random
    pairing), so the occluded input stays on the data's manifold; the drop is written into
    every input position of the patch.

    Args:
      ensemble: the trained heads.
      x: [N, *S] raw inputs (the target set, say).
      patch: side of the square patches of an image (vectors: runs of at most 1/128 of it).
      max_rows: rows used (the first ones).
      seed: the pairing of rows.

    Returns:
      maps: [H, C, *S] mean over the rows head h predicts as c of the drop in log p_h(c | x)
        (zeros where a head never predicts c).
      counts: [H, C] how many rows each map averages.
    """
    x = np.asarray(x[:max_rows], np.float32)
    donors = x[np.random.default_rng(seed).permutation(len(x))]
    log_probs = np.log(np.clip(ensemble.predict_proba(x), 1e-12, None))  # [H, B, C]
    predicted = log_probs.argmax(-1)  # [H, B]
    num_heads, _, num_classes = log_probs.shape
    masks = np.eye(num_classes, dtype=bool)[predicted]  # [H, B, C]
    counts = masks.sum(axis=1)  # [H, C]
    before = np.take_along_axis(log_probs, predicted[..., None], -1)[..., 0]  # [H, B]
    maps = np.zeros((num_heads, num_classes) + x.shape[1:], np.float32)
    for where in _patches(x.shape[1:], patch):
        rows = (slice(None),) + where
        occluded = x.copy()
        occluded[rows] = donors[rows]
        after = np.log(np.clip(ensemble.predict_proba(occluded), 1e-12, None))
        drop = before - np.take_along_axis(after, predicted[..., None], -1)[..., 0]  # [H, B]
        mean_drop = np.einsum("hb,hbc->hc", drop, masks) / np.maximum(counts, 1)
        maps[(slice(None), slice(None)) + where] = mean_drop.reshape(
            mean_drop.shape + (1,) * len(x.shape[1:]))
    return maps, counts
