"""A stand-in for set 888 (an animal beside a vehicle, CIFAR colour images), built from MNIST.

CIFAR cannot be downloaded here, so the stand-in keeps what the original's shape and
structure are, not its content:
* the original's shapes, sizes and dtype: float32 [N, 3, 32, 64], 10,000 labeled, 20,000
  unlabeled and 20,000 target rows, labels 0/1;
* two 3x32x32 halves: the left one an "animal" (a digit 3 or 5), the right one a "vehicle" (a
  digit 4 or 9). The label is the class of one half, drawn per seed, so no solver can assume
  which; the other half equals it on labeled rows, agrees at random on a share `mix_rate`
  of the unlabeled rows and on every target row;
* content that rewards a convolution over a per-pixel model: each digit is resized, placed at
  a random position, drawn in a colour that contrasts with a random smooth colour texture
  behind it, plus N(0, 0.02) noise.

What it does not capture: CIFAR's objects (shapes far richer than a digit's strokes, and
classes such as bird and cat that look alike), its photographs' backgrounds, and any
difference in difficulty between the two halves' classes. Digits are reused: each MNIST digit
of a class appears about four times, each time with another size, place, colour and texture.
"""

import numpy as np

from ambig_jax.datasets import mnist

DIGITS = {"animal": (3, 5), "vehicle": (4, 9)}  # digit standing for class 0, class 1
SIDE = 32  # each half is 3 x SIDE x SIDE
DIGIT_SIDES = (20, 24)  # a digit is resized to one of these, then placed anywhere in its half
TEXTURE_CONTRAST = 0.4  # the background's spread around mid-grey (0: flat grey)
DIGIT_NOISE_STD = 0.02
CHUNK = 2048  # rows rendered at once (bounds the generator's memory)


def _resampling(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] bilinear resampling matrix (rows sum to 1)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    hi = np.clip(lo + 1, 0, n_in - 1)
    w = np.clip(pos - lo, 0.0, 1.0)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - w)
    np.add.at(m, (np.arange(n_out), hi), w)
    return m


def _placements() -> tuple[np.ndarray, np.ndarray]:
    """Every (digit side, offset) as a [SIDE, 28] matrix that resizes a 28-pixel axis and
    shifts it into place: (matrices [P, SIDE, 28], their digit sides [P]), grouped by side
    with offsets ascending."""
    mats, sides = [], []
    for side in DIGIT_SIDES:
        resize = _resampling(side, 28)
        for offset in range(SIDE - side + 1):
            m = np.zeros((SIDE, 28))
            m[offset:offset + side] = resize
            mats.append(m), sides.append(side)
    return np.asarray(mats, np.float32), np.asarray(sides)


def render(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    """Digits [N, 28, 28] in [0, 1] -> float32 colour halves [N, 3, SIDE, SIDE]."""
    n = len(digits)
    mats, sides = _placements()
    side = rng.choice(DIGIT_SIDES, n)
    first = np.searchsorted(sides, side)
    # one placement per axis, among those of the drawn side
    rows, cols = (first + rng.integers(0, SIDE - side + 1) for _ in range(2))
    alpha = np.clip(mats[rows] @ digits.astype(np.float32) @ mats[cols].transpose(0, 2, 1), 0, 1)
    coarse, fine = _resampling(SIDE, 4).astype(np.float32), _resampling(SIDE, 8).astype(np.float32)
    texture = (coarse @ rng.uniform(0, 1, (n, 3, 4, 4)).astype(np.float32) @ coarse.T
               + 0.5 * fine @ rng.uniform(-0.5, 0.5, (n, 3, 8, 8)).astype(np.float32) @ fine.T)
    texture = np.clip(0.5 + TEXTURE_CONTRAST * (texture - 0.5), 0, 1)
    light = texture.mean(axis=(1, 2, 3)) > 0.5  # a dark digit on light ground, or the reverse
    ink = np.where(light[:, None], rng.uniform(0.0, 0.3, (n, 3)), rng.uniform(0.7, 1.0, (n, 3)))
    x = (1 - alpha[:, None]) * texture + alpha[:, None] * ink[:, :, None, None].astype(np.float32)
    return x + rng.normal(0.0, DIGIT_NOISE_STD, x.shape).astype(np.float32)


def generate(rng: np.random.Generator, sizes, mix_rate: float, mnist_dir=None):
    """The stand-in's splits.

    Args:
      rng: numpy Generator (the set's seed).
      sizes: (labeled, unlabeled, target) rows (the catalogue's are the original's).
      mix_rate: share of the unlabeled rows whose halves agree only at random.
      mnist_dir: folder of the MNIST files (default: the bundled copy).

    Returns:
      (x, y, meta): split -> float32 [N, 3, 32, 64]; split -> int64 labels [N] in {0, 1};
      split -> {"spurious": int64 [N] class of the other half, "label_half": int64 [N], 0
      when the label is the left (animal) half's class, 1 when it is the right's}.
    """
    images, labels = mnist.load_mnist("train", mnist_dir)
    by_class = {d: np.flatnonzero(labels == d) for pair in DIGITS.values() for d in pair}
    label_half = int(rng.integers(2))  # which half the label follows, for every split
    x, y, meta = {}, {}, {}
    for split, n, mixed in zip(("labeled", "unlabeled", "target"), sizes,
                               (0.0, mix_rate, 1.0)):
        label = rng.integers(0, 2, n)
        other = np.where(rng.random(n) < mixed, rng.integers(0, 2, n), label)
        classes = {"animal": label, "vehicle": other} if label_half == 0 else \
            {"animal": other, "vehicle": label}
        out = np.empty((n, 3, SIDE, 2 * SIDE), np.float32)
        for start in range(0, n, CHUNK):
            rows = slice(start, start + CHUNK)
            for half, (kind, digit_of) in enumerate(DIGITS.items()):
                cls = classes[kind][rows]
                picks = np.empty(len(cls), int)
                for c, digit in enumerate(digit_of):
                    picks[cls == c] = rng.choice(by_class[digit], int(np.sum(cls == c)))
                out[rows, :, :, half * SIDE:(half + 1) * SIDE] = render(
                    rng, images[picks] / np.float32(255))
        x[split], y[split] = out, label.astype(np.int64)
        meta[split] = {"spurious": other.astype(np.int64),
                       "label_half": np.full(n, label_half, np.int64)}
    return x, y, meta
