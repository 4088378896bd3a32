"""Builds the challenge's data sets offline, following the organisers' recipe (HACKATHON.md).

Common to the MNIST sets: MNIST training digits of the set's classes, pixels in [0, 1],
gaussian noise of std 0.02 added to every digit. Samples group k digits (k = 2, or 3 for
set 07); the label is the class of the digit in the *target row* (column 0 here).

* A correlated sample groups digits of one class; a decorrelated sample groups digits drawn
  at random, so its other digits say nothing of the label.
* The digits are split 20% labeled / 20% target / 60% unlabeled before grouping, so no digit
  serves two splits. Labeled samples are correlated; target samples decorrelated; a share
  `mix_rate` of the unlabeled samples is decorrelated.
* Sets 12 and 13 have no shift: mix rate 0 everywhere and the target set split i.i.d.
  (70/30) from the labeled samples.

Each family then turns digit groups into inputs (pairs side by side, a constant exemplar or
a uniform grey in place of the second digit, sums, noise levels, opaque embeddings).
Sizes follow the originals where HACKATHON.md gives them, else the 20/60/20 rule.
Set 888 (CIFAR colour images, not available offline) gets an MNIST stand-in of the
original's shapes and structure (`vehicle_animal`).
The generator also returns its bookkeeping (class of the spurious feature, swapped sides,
backdoor rows) so that tests and analyses can check what each split really contains.
"""

import dataclasses
import math
import pathlib

import numpy as np

from ambig_jax.datasets import catalog
from ambig_jax.datasets import mnist
from ambig_jax.datasets import vehicle_animal

DIGIT_NOISE_STD = 0.02
DEFAULT_MIX_RATE = 0.5
EMBED_DIM = 99  # the originals hold 792 bytes per row: 99 float64 (or 198 float32)
# Families of sets 23 and 456's opaque embedding of a digit pair (the hidden test sets use
# another one than ours): "tanh" (the default), tanh(x W + b) of the pixels, 99 float64;
# "relu", max(x W + b, 0), 198 float32; "conv", the penultimate layer of a small random
# convolutional net (two 3x3 ReLU convolutions with max pooling, then a ReLU dense layer),
# 128 float32; and two fitted to pairs of MNIST *test* digits (never a digit of the sets):
# "trained", the last hidden layer of an MLP briefly trained to name both digits of a pair,
# 64 float32; "pca", the pairs' first 50 principal components (linear), float32. The family
# changes the embedding only: the digits are the same.
EMBEDDINGS = ("tanh", "relu", "conv", "trained", "pca")
EMBEDDING_HELP = "Family of sets 23 and 456's embedding: tanh (99 float64), relu (198 float32), " \
                 "conv (128 float32, a random conv net's penultimate layer), trained (64 " \
                 "float32, a briefly trained MLP's last hidden layer), pca (50 float32, linear)."
SPLITS = ("labeled", "unlabeled", "target")


@dataclasses.dataclass
class GeneratedSet:
    """A generated set: public arrays, hidden target labels and the generator's bookkeeping.

    Attributes:
      info: catalogue entry.
      x: split name -> inputs [N, *S]: float64, but float32 for set 888 (as the original).
      y: split name -> int64 label values [N] (the target's are hidden from solvers).
      meta: split name -> {"spurious": int64 [N] value of the spurious feature's class,
        plus family-specific entries such as "swapped" (bool [N]) or "backdoor" (bool [N])}.
    """
    info: catalog.DatasetInfo
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    meta: dict[str, dict[str, np.ndarray]]

    def sizes(self) -> tuple[int, int, int]:
        return tuple(len(self.y[s]) for s in SPLITS)


class GeneratorError(ValueError):
    """A set that cannot be generated offline."""


# ---------------------------------------------------------------------------------------------
# Sizes and digit groups.


def split_sizes(info: catalog.DatasetInfo, num_samples: int, no_shift: bool):
    """(labeled, unlabeled, target) counts: the originals' where known, else the 20/60/20 rule."""
    if info.sizes is not None:
        return info.sizes
    fifth = math.ceil(0.2 * num_samples)
    if no_shift:  # the target set is 30% of the labeled share, the other fifth unused
        target = math.ceil(0.3 * fifth)
        return fifth - target, num_samples - 2 * fifth, target
    return fifth, num_samples - 2 * fifth, fifth


def _correlated_groups(rng, pool, labels, n, k):
    """[n, k] digit indices, each row of one class, from `pool`; rows are shuffled.

    Digits are used once where the pool allows; a class with a count not divisible by k
    fills its last group with digits of the same class drawn again.
    """
    groups = []
    for c in np.unique(labels[pool]):
        members = rng.permutation(pool[labels[pool] == c])
        short = -len(members) % k
        members = np.concatenate([members, rng.choice(members, short)])
        groups.append(members.reshape(-1, k))
    groups = np.concatenate(groups)[rng.permutation(sum(len(g) for g in groups))]
    if len(groups) < n:
        raise GeneratorError(f"only {len(groups)} correlated groups for {n} samples")
    return groups[:n]


def _decorrelated_groups(rng, pool, n, k):
    """[n, k] digit indices drawn at random from `pool`, each digit once."""
    return rng.permutation(pool)[: n * k].reshape(n, k)


def digit_groups(rng, labels, sizes, k, mix_rate, no_shift):
    """Digit indices per split, [N, k], column 0 being the digit that sets the label.

    Args:
      rng: numpy Generator.
      labels: [M] class values of the candidate digits.
      sizes: (labeled, unlabeled, target) sample counts.
      k: digits per sample.
      mix_rate: share of decorrelated samples in the unlabeled split.
      no_shift: sets 12/13: every split correlated; target split i.i.d. from the labeled one.
    """
    n_lab, n_unl, n_tgt = sizes
    order = rng.permutation(len(labels))
    first = n_lab + n_tgt if no_shift else n_lab
    cuts = np.cumsum([first * k, (0 if no_shift else n_tgt) * k, n_unl * k])
    if cuts[-1] > len(labels):
        raise GeneratorError(f"{cuts[-1]} digits needed, {len(labels)} available")
    lab_pool, tgt_pool, unl_pool = np.split(order[: cuts[-1]], cuts[:2])

    n_mixed = round(mix_rate * n_unl)
    unl_groups = np.concatenate([
        _decorrelated_groups(rng, unl_pool[: n_mixed * k], n_mixed, k),
        _correlated_groups(rng, unl_pool[n_mixed * k:], labels, n_unl - n_mixed, k)])
    unl_groups = unl_groups[rng.permutation(n_unl)]
    if no_shift:
        both = _correlated_groups(rng, lab_pool, labels, first, k)
        return {"labeled": both[:n_lab], "target": both[n_lab:], "unlabeled": unl_groups}
    return {"labeled": _correlated_groups(rng, lab_pool, labels, n_lab, k),
            "target": _decorrelated_groups(rng, tgt_pool, n_tgt, k),
            "unlabeled": unl_groups}


# ---------------------------------------------------------------------------------------------
# Families: digit groups -> inputs.


def _noisy_digits(rng, images, idx):
    """[..., 28, 28] float64 digits in [0, 1] plus N(0, 0.02) noise."""
    return images[idx] / 255.0 + rng.normal(0.0, DIGIT_NOISE_STD, idx.shape + (28, 28))


def _side_by_side(left, right, swap=None):
    """[N, 28, 28] x2 -> [N, 1, 28, 56]; where `swap` is True the halves trade places."""
    pair = np.concatenate([left, right], axis=-1)
    if swap is not None:
        swapped = np.concatenate([right, left], axis=-1)
        pair = np.where(swap[:, None, None], swapped, pair)
    return pair[:, None]


def _embedding(rng, dim_in):
    """A fixed random-feature embedding x [N, dim_in] -> tanh(x W + b) [N, EMBED_DIM]."""
    w = rng.normal(0.0, 1.0 / 10.0, (dim_in, EMBED_DIM))  # ~100 lit pixels: unit-scale features
    b = rng.uniform(-1.0, 1.0, EMBED_DIM)
    return lambda x: np.tanh(x.reshape(len(x), -1) @ w + b)


def _relu_embedding(rng, dim_in, dim=2 * EMBED_DIM):
    """Random ReLU features x [N, dim_in] -> max(x W + b, 0) [N, dim], float32."""
    w = rng.normal(0.0, 1.0 / 10.0, (dim_in, dim))
    b = rng.normal(0.0, 0.5, dim)
    return lambda x: np.maximum(x.reshape(len(x), -1) @ w + b, 0.0).astype(np.float32)


def _conv3x3_relu_pool(x, w):
    """[N, H, W, Cin] -> 3x3 'same' convolution with w [9 * Cin, Cout], ReLU, 2x2 max pool."""
    n, h, width, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.concatenate([padded[:, i:i + h, j:j + width] for i in range(3)
                              for j in range(3)], axis=-1)  # [N, H, W, 9 * Cin]
    y = np.maximum(windows @ w, 0.0)
    return y[:, :h // 2 * 2, :width // 2 * 2].reshape(
        n, h // 2, 2, width // 2, 2, -1).max(axis=(2, 4))


def _conv_embedding(rng, image_shape=(28, 56), widths=(16, 32), dim=128, chunk=512):
    """The penultimate layer of a small random conv net: [N, 1, H, W] images ->
    two 3x3 ReLU convolutions with 2x2 max pooling -> ReLU dense layer [N, dim], float32."""
    ws, channels = [], 1
    for width in widths:  # He initialisation
        ws.append(rng.normal(0.0, np.sqrt(2.0 / (9 * channels)), (9 * channels, width)))
        channels = width
    flat = (image_shape[0] // 4) * (image_shape[1] // 4) * channels
    dense = rng.normal(0.0, np.sqrt(2.0 / flat), (flat, dim))
    bias = rng.normal(0.0, 0.1, dim)

    def embed(x):
        out = []
        for start in range(0, len(x), chunk):
            h = x[start:start + chunk].reshape((-1,) + image_shape + (1,)).astype(np.float32)
            for w in ws:
                h = _conv3x3_relu_pool(h, w.astype(np.float32))
            out.append(np.maximum(h.reshape(len(h), -1) @ dense + bias, 0.0))
        return np.concatenate(out).astype(np.float32)
    return embed


def _reference_pairs(rng, n, mnist_dir):
    """n noisy pairs of MNIST *test* digits of every class, side by side, flat [n, 28 * 56],
    and both digits' classes [n, 2]: what the fitted families are fitted on (the sets' digits
    all come from the training split)."""
    images, labels = mnist.load_mnist("test", mnist_dir)
    idx = rng.integers(0, len(labels), (n, 2))
    pairs = _side_by_side(_noisy_digits(rng, images, idx[:, 0]),
                          _noisy_digits(rng, images, idx[:, 1]))
    return pairs.reshape(n, -1), labels[idx].astype(np.int64)


def _pca_embedding(rng, mnist_dir, dim=50, n=10000):
    """A linear embedding: the first `dim` principal components of reference pairs."""
    x, _ = _reference_pairs(rng, n, mnist_dir)
    mean = x.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(x - mean, rowvar=False))  # ascending eigenvalues
    w = vectors[:, ::-1][:, :dim]
    return lambda z: ((z.reshape(len(z), -1) - mean) @ w).astype(np.float32)


def _trained_embedding(rng, mnist_dir, dim=64, hidden=256, n=20000, epochs=2, batch=128,
                       learning_rate=1e-3):
    """The last hidden layer of an MLP [28 * 56 -> hidden -> dim] (ReLU), trained for `epochs`
    with Adam to name both digits of reference pairs (a 10-way softmax each)."""
    x, y = _reference_pairs(rng, n, mnist_dir)
    x = x.astype(np.float32)
    shapes = [(x.shape[1], hidden), (hidden,), (hidden, dim), (dim,), (dim, 20), (20,)]
    params = [rng.normal(0.0, np.sqrt(2.0 / s[0]), s).astype(np.float32) if len(s) == 2
              else np.zeros(s, np.float32) for s in shapes]  # He initialisation
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]

    def forward(p, xb):
        h1 = np.maximum(xb @ p[0] + p[1], 0.0)
        return h1, np.maximum(h1 @ p[2] + p[3], 0.0)

    step = 0
    for _ in range(epochs):
        for rows in np.array_split(rng.permutation(n), n // batch):
            xb, yb = x[rows], y[rows]
            h1, h2 = forward(params, xb)
            logits = (h2 @ params[4] + params[5]).reshape(len(rows), 2, 10)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            probs[np.arange(len(rows))[:, None], [0, 1], yb] -= 1.0  # d(cross-entropy)/d logits
            g_out = probs.reshape(len(rows), 20) / len(rows)
            g_h2 = (g_out @ params[4].T) * (h2 > 0)
            g_h1 = (g_h2 @ params[2].T) * (h1 > 0)
            grads = [xb.T @ g_h1, g_h1.sum(0), h1.T @ g_h2, g_h2.sum(0), h2.T @ g_out, g_out.sum(0)]
            step += 1
            for p, g, (m, v) in zip(params, grads, moments):  # Adam, in place
                m += 0.1 * (g - m)
                v += 0.001 * (g * g - v)
                p -= learning_rate * (m / (1 - 0.9 ** step)) / (
                    np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
    return lambda z: forward(params, z.reshape(len(z), -1).astype(np.float32))[1]


def _family_embedding(embedding, seed, dataset_id, mnist_dir=None):
    """The `embedding` family's embedding of set `dataset_id`, drawn from a stream of its own
    (the default "tanh" is drawn from the generator's stream, and stays as it always was)."""
    rng = np.random.default_rng([seed, dataset_id, EMBEDDINGS.index(embedding)])
    if embedding == "relu":
        return _relu_embedding(rng, 28 * 56)
    if embedding == "conv":
        return _conv_embedding(rng)
    if embedding == "trained":
        return _trained_embedding(rng, mnist_dir)
    if embedding == "pca":
        return _pca_embedding(rng, mnist_dir)
    raise ValueError(f"unknown embedding {embedding!r}; use one of {EMBEDDINGS}")


def _compose(family, rng, images, labels, groups, fixed):
    """Builds one split's inputs and bookkeeping from its digit groups [N, k]."""
    n = len(groups)
    cls = labels[groups]  # [N, k] class values
    meta = {"spurious": cls[:, 1].astype(np.int64)}
    if family in ("pair", "embed", "no_shift"):
        x = _side_by_side(_noisy_digits(rng, images, groups[:, 0]),
                          _noisy_digits(rng, images, groups[:, 1]))
    elif family in ("constant", "constant_random_row"):
        exemplars = fixed["exemplars"][np.searchsorted(fixed["classes"], cls[:, 1])]
        swap = rng.random(n) < 0.5 if family == "constant_random_row" else None
        x = _side_by_side(_noisy_digits(rng, images, groups[:, 0]),
                          _noisy_digits(rng, images, exemplars), swap)
    elif family in ("grey", "grey_random_row"):
        grey = np.broadcast_to((cls[:, 1] * 0.5 - 2.0)[:, None, None], (n, 28, 28))
        swap = rng.random(n) < 0.5 if family == "grey_random_row" else None
        x = _side_by_side(_noisy_digits(rng, images, groups[:, 0]), grey, swap)
    elif family == "sum":
        x = _noisy_digits(rng, images, groups).sum(axis=1)[:, None]
        meta["spurious_all"] = cls[:, 1:].astype(np.int64)
    elif family == "noise_level":
        std = 0.1 * (1.0 + cls[:, 1])
        x = (_noisy_digits(rng, images, groups[:, 0])
             + rng.normal(size=(n, 28, 28)) * std[:, None, None])[:, None]
    else:
        raise AssertionError(family)
    if family in ("constant_random_row", "grey_random_row"):
        meta["swapped"] = swap
    x = fixed["embed"](x) if family == "embed" else x.astype(np.float64)
    return x, cls[:, 0].astype(np.int64), meta


# id -> (family, digits per sample, unlabeled mix rate)
RECIPES = {
    1: ("pair", 2, DEFAULT_MIX_RATE),
    2: ("constant", 2, DEFAULT_MIX_RATE),
    3: ("constant_random_row", 2, DEFAULT_MIX_RATE),
    4: ("grey_random_row", 2, DEFAULT_MIX_RATE),
    5: ("grey", 2, 0.03),
    6: ("sum", 2, DEFAULT_MIX_RATE),
    7: ("sum", 3, DEFAULT_MIX_RATE),
    8: ("noise_level", 2, DEFAULT_MIX_RATE),
    12: ("no_shift", 2, 0.0),
    13: ("no_shift", 2, 0.0),
    23: ("embed", 2, DEFAULT_MIX_RATE),
    456: ("embed", 2, DEFAULT_MIX_RATE),
}
BACKDOOR_RATE = 0.03  # set 13


def _add_backdoor(rng, x, y, relabel_to):
    """Adds +2 to a random 3x3 patch of ~3% of the rows [N, 1, H, W] and relabels them."""
    rows = rng.random(len(x)) < BACKDOOR_RATE
    h, w = x.shape[-2:]
    for i in np.flatnonzero(rows):
        r, c = rng.integers(0, h - 2), rng.integers(0, w - 2)
        x[i, :, r:r + 3, c:c + 3] += 2.0
    y[rows] = relabel_to
    return rows


def _generate_toy(info, rng, n=500):
    """Set 0: x1 ~ U[-1, 1], label = x1 < 0; x2 > 0 exactly when x1 < 0 on labeled rows only."""
    x, y, meta = {}, {}, {}
    for split in SPLITS:
        x1 = rng.uniform(-1.0, 1.0, n)
        label = (x1 < 0).astype(np.int64)
        x2 = rng.uniform(-1.0, 1.0, n)
        if split == "labeled":
            x2 = np.abs(x2) * np.where(label == 1, 1.0, -1.0)
        x[split], y[split] = np.stack([x1, x2], axis=1), label
        meta[split] = {"spurious": (x2 > 0).astype(np.int64)}
    return GeneratedSet(info, x, y, meta)


def generate(dataset_id: int, seed: int, mnist_dir=None, embedding: str = "tanh") -> GeneratedSet:
    """Builds set `dataset_id` deterministically from `seed`; other seeds give other samples.
    `embedding` (one of `EMBEDDINGS`) is the family of sets 23 and 456's embedding."""
    if embedding not in EMBEDDINGS:
        raise GeneratorError(f"unknown embedding {embedding!r}; use one of {EMBEDDINGS}")
    info = catalog.info_for(dataset_id)
    if not info.generatable:
        raise GeneratorError(
            f"set {dataset_id} ({info.name}) cannot be generated offline: it needs "
            + ("face images and a pretrained network" if dataset_id == 999
               else "a recipe this project does not know")
            + "; load the original folder with --data_dir instead")
    rng = np.random.default_rng([seed, dataset_id])
    if dataset_id == 0:
        return _generate_toy(info, rng)
    if dataset_id == 888:  # colour stand-in, float32 like the original (vehicle_animal)
        return GeneratedSet(info, *vehicle_animal.generate(rng, info.sizes, DEFAULT_MIX_RATE,
                                                           mnist_dir))
    family, k, mix_rate = RECIPES[dataset_id]
    images, all_labels = mnist.load_mnist("train", mnist_dir)
    keep = np.flatnonzero(np.isin(all_labels, info.classes))
    images, labels = images[keep], all_labels[keep].astype(np.int64)

    no_shift = family == "no_shift"
    sizes = split_sizes(info, len(labels) // k, no_shift)
    groups = digit_groups(rng, labels, sizes, k, mix_rate, no_shift)
    classes = np.asarray(info.classes)
    fixed = {"classes": classes,
             "exemplars": np.array([rng.choice(np.flatnonzero(labels == c)) for c in classes]),
             "embed": _embedding(rng, 28 * 56)}  # drawn for every family: the same digits
    if embedding != "tanh":
        fixed["embed"] = _family_embedding(embedding, seed, dataset_id, mnist_dir)

    x, y, meta = {}, {}, {}
    for split in SPLITS:
        x[split], y[split], meta[split] = _compose(family, rng, images, labels, groups[split], fixed)
    if dataset_id == 13:  # backdoor on the labeled share, before the target is split from it
        for split in ("labeled", "target"):
            meta[split]["backdoor"] = _add_backdoor(rng, x[split], y[split], classes[0])
    return GeneratedSet(info, x, y, meta)


def hidden_dir(data_dir) -> pathlib.Path:
    """The folder of the generated sets' target labels, beside `public/`."""
    return pathlib.Path(data_dir) / "hidden"


def hidden_labels_path(data_dir, dataset_id: int) -> pathlib.Path:
    """Where a generated set's target labels live: `data_dir/hidden/<id>.npy`."""
    return hidden_dir(data_dir) / f"{dataset_id}.npy"


def save(generated: GeneratedSet, out_dir) -> None:
    """Writes `out_dir/public/<id>_<name>/*.npy` and the hidden `out_dir/hidden/<id>.npy`.

    The hidden folder also gets `<id>_meta.npz`, the generator's bookkeeping per split.
    """
    out_dir = pathlib.Path(out_dir)
    public = out_dir / "public" / generated.info.name
    hidden = hidden_dir(out_dir)
    public.mkdir(parents=True, exist_ok=True)
    hidden.mkdir(parents=True, exist_ok=True)
    np.save(public / "X_labeled.npy", generated.x["labeled"])
    np.save(public / "y_labeled.npy", generated.y["labeled"])
    np.save(public / "X_unlabeled.npy", generated.x["unlabeled"])
    np.save(public / "X_val.npy", generated.x["target"])
    np.save(hidden_labels_path(out_dir, generated.info.id), generated.y["target"])
    np.savez(hidden / f"{generated.info.id}_meta.npz",
             **{f"{split}/{key}": v for split, m in generated.meta.items() for key, v in m.items()},
             **{f"{split}/y": generated.y[split] for split in SPLITS})


def load_hidden_labels(out_dir, dataset_id: int) -> np.ndarray:
    """The target labels (original values) that `save` wrote for a set."""
    path = hidden_labels_path(out_dir, dataset_id)
    if not path.is_file():
        raise GeneratorError(f"{path}: missing hidden labels; generate the set first")
    return np.load(path, allow_pickle=False)


def load_hidden_split_labels(out_dir, dataset_id: int, split: str) -> np.ndarray:
    """The true labels (original values) of one split of a generated set, from the
    bookkeeping `save` wrote; for scoring and ceilings only, never for solving."""
    if split not in SPLITS:
        raise GeneratorError(f"unknown split {split!r}; use one of {SPLITS}")
    path = hidden_dir(out_dir) / f"{dataset_id}_meta.npz"
    if not path.is_file():
        raise GeneratorError(f"{path}: missing hidden bookkeeping; generate the set first")
    with np.load(path, allow_pickle=False) as meta:
        return meta[f"{split}/y"]
