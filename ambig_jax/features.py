"""The backbone's first stage for images: frozen random convolutions, applied once per run.

Two encoders, chosen by the input's shape (`encode`):
* colour images [3, H, W] go through a frozen random convolutional trunk (`TrunkEncoder`);
* other images (the one-channel MNIST sets) keep their pixels, and gain features that say
  whether a few random 3x3 filters reach, anywhere on the image, an extreme that few rows
  reach (`PixelsAndPatterns`): a per-pixel MLP cannot carry a small local pattern (set 13's
  backdoor: a bright 3x3 patch at a random place) to the places it never saw it at, and a
  filter's maximum over the image sees it anywhere.

A member that sees raw colour pixels through an MLP must learn each object at every place it
can appear; a convolution sees a local pattern anywhere. Training convolutions is what XLA's
CPU backend does worst (and vmapping one over the heads' parameters is pathological,
docs/method.md), so the trunk is not trained: its random filters are drawn once from the
run's seed, shared by every head, and each row is encoded once, before the heads train. A
random trunk also keeps every feature of the image alike, where one trained on the labeled
rows would keep the simplest feature that explains them and drop the one a head must find.

Shapes: N rows, images [N, C, H, W] (the challenge's channels-first layout), features [N, F].
The trunk: subtractive local contrast normalisation (each pixel minus a Gaussian blur of its
neighbourhood, which flattens smooth backgrounds and keeps edges), three 3x3 ReLU
convolutions with 2x2 max pooling between them, and max pooling into a coarse grid of cells
that keeps where a pattern is (which half of the image, say), not exactly where.
"""

import dataclasses
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets.loader import Dataset

WIDTHS = (32, 64, 128)  # channels of the three convolutions
CELL_ROWS = 2  # the final grid has 2 rows of square-ish cells
BLUR_SIGMA, BLUR_TAPS = 2.0, 9
STATS_ROWS = 4096  # rows of each split that fix the input's per-channel scale
PATTERN_SIZE = 3  # side of the local-pattern filters (set 13's patch is 3x3)
FENCE = 3.0  # Tukey's far-out fence: 3 interquartile ranges beyond the quartiles
_KEY_SALT = 888  # the trunk's key is fold_in(key(config.seed), _KEY_SALT); any fixed number
# would do (it is the same for every colour set), this one keeps the figures of docs/set-888.md


def uses_trunk(input_shape: Sequence[int], config: Config) -> bool:
    """Whether inputs of `input_shape` go through the trunk: colour images [3, H, W] under
    `config.trunk="auto"`; vectors and one-channel images (the MNIST sets) go to the MLP."""
    return (config.trunk == "auto" and len(input_shape) == 3 and input_shape[0] == 3
            and min(input_shape[1:]) >= 8)


def uses_patterns(input_shape: Sequence[int], config: Config) -> bool:
    """Whether images of `input_shape` gain local-pattern features: images that do not go
    through the trunk, when `config.local_patterns` > 0 and the backbone is the MLP."""
    return (config.local_patterns > 0 and config.backbone == "mlp" and len(input_shape) == 3
            and min(input_shape[1:]) >= PATTERN_SIZE and not uses_trunk(input_shape, config))


def _gaussian_matrix(size: int) -> np.ndarray:
    """[size, size] Gaussian smoothing along one axis, zero beyond the edges ('same' size)."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    taps = np.exp(-0.5 * (offsets / BLUR_SIGMA) ** 2) * (np.abs(offsets) <= BLUR_TAPS // 2)
    return taps / taps[size // 2].sum()


def _blur(x: jax.Array) -> jax.Array:
    """Per-channel Gaussian blur of NHWC images, as two matrix products (one per axis): XLA's
    CPU backend runs a depthwise convolution of this size about 10x slower."""
    rows = jnp.asarray(_gaussian_matrix(x.shape[1]), x.dtype)
    cols = jnp.asarray(_gaussian_matrix(x.shape[2]), x.dtype)
    return jnp.einsum("ij,njkc,lk->nilc", rows, x, cols)


def _grid_max(x: jax.Array, cell_rows: int) -> jax.Array:
    """NHWC -> [N, cells * C]: the max of each channel in each cell of a grid of
    `cell_rows` rows and as many columns as keep the cells about square."""
    _, height, width, _ = x.shape
    cols = max(1, round(cell_rows * width / height))
    row_edges = np.linspace(0, height, cell_rows + 1).round().astype(int)
    col_edges = np.linspace(0, width, cols + 1).round().astype(int)
    cells = [x[:, r0:r1, c0:c1].max(axis=(1, 2))
             for r0, r1 in zip(row_edges[:-1], row_edges[1:])
             for c0, c1 in zip(col_edges[:-1], col_edges[1:])]
    return jnp.concatenate(cells, axis=-1)


class RandomConvTrunk(nn.Module):
    """[N, C, H, W] scaled images -> [N, cells * WIDTHS[-1]] features (never trained)."""
    widths: Sequence[int] = WIDTHS
    cell_rows: int = CELL_ROWS
    dtype: jnp.dtype = jnp.float32  # bfloat16 on accelerators

    @nn.compact
    def __call__(self, x):
        x = jnp.moveaxis(x, 1, -1).astype(self.dtype)  # NCHW -> NHWC
        x = x - _blur(x)
        for i, width in enumerate(self.widths):
            if i:
                x = nn.max_pool(x, (2, 2), (2, 2))
            x = nn.relu(nn.Conv(width, (3, 3), kernel_init=nn.initializers.he_normal(),
                                dtype=self.dtype)(x))
        return _grid_max(x, self.cell_rows).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class TrunkEncoder:
    """Raw images -> trunk features, in chunks, on the default device."""
    module: RandomConvTrunk
    params: dict
    mean: np.ndarray  # [1, C, 1, 1] per-channel centre of the raw inputs
    scale: np.ndarray  # [1, C, 1, 1] per-channel standard deviation

    description = "the random convolutional trunk"
    keeps_pixels = False  # the heads see trunk features only
    occlusion_patch = 8  # side of the patches its occlusion maps resample

    @classmethod
    def fit(cls, dataset: Dataset, config: Config) -> "TrunkEncoder":
        """The trunk of `config.seed`, with the input's per-channel scale taken from the first
        `STATS_ROWS` rows of each split."""
        mean, scale = _channel_stats(dataset)
        accelerated = jax.default_backend() in ("gpu", "tpu")
        module = RandomConvTrunk(dtype=jnp.bfloat16 if accelerated else jnp.float32)
        key = jax.random.fold_in(jax.random.key(config.seed), _KEY_SALT)
        params = module.init(key, jnp.zeros((1,) + dataset.input_shape, jnp.float32))
        return cls(module, params, mean, scale)

    def __call__(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """float32 features [N, F] of raw images x [N, C, H, W]."""
        apply = functools.partial(_jitted_apply(self.module), self.params)
        return _in_chunks(lambda rows: apply((rows - self.mean) / self.scale), x, chunk)


@dataclasses.dataclass(frozen=True)
class PixelsAndPatterns:
    """Raw images -> their pixels, then how far each random 3x3 filter's extremes over the
    image lie beyond what most rows show: rare local triggers, not global statistics.

    A filter's maximum (and minimum) over an image sees a small pattern anywhere, but it
    also reads any global property that shifts it: a noise level (set 08's spurious
    feature) would become a feature easier than the digit, and the heads would follow it.
    So each extreme becomes its excess over Tukey's far-out fence, fitted on every row of
    the data set (labeled, unlabeled, target): max(0, (e - Q3) / (Q3 - Q1) - `FENCE`). A
    property that many rows share moves the quartiles with it and never passes the fence;
    a pattern that few rows carry (13's backdoor patch, on 3% of them) passes it by far.

    The filters are drawn once from the run's seed and see the image scaled to zero mean
    and unit variance per channel. The heads' standardisation then scales every feature.
    """
    filters: np.ndarray  # [PATTERN_SIZE, PATTERN_SIZE, C, K]
    mean: np.ndarray  # [1, C, 1, 1] per-channel centre of the raw inputs
    scale: np.ndarray  # [1, C, 1, 1] per-channel standard deviation
    image_shape: tuple[int, ...]  # [C, H, W]
    quartiles: np.ndarray  # [2, 2K] Q1 and Q3 of the extremes (maxima, negated minima)

    description = "their pixels and the rare extremes of random 3x3 filters"
    keeps_pixels = True  # the rows start with the image's pixels
    occlusion_patch = 4

    @classmethod
    def fit(cls, dataset: Dataset, config: Config) -> "PixelsAndPatterns":
        """`config.local_patterns` filters of `config.seed`, their fences fitted on every
        row of the data set."""
        mean, scale = _channel_stats(dataset)
        channels = dataset.input_shape[0]
        key = jax.random.fold_in(jax.random.key(config.seed), _KEY_SALT + 1)  # not the trunk's
        filters = jax.random.normal(key, (PATTERN_SIZE, PATTERN_SIZE, channels,
                                          config.local_patterns)) / (3.0 * np.sqrt(channels))
        unfitted = cls(np.asarray(filters, np.float32), mean, scale,
                       tuple(dataset.input_shape), np.zeros((2, 2 * config.local_patterns)))
        extremes = np.concatenate([unfitted.extremes(x) for x in
                                   (dataset.x_labeled, dataset.x_unlabeled, dataset.x_target)])
        return dataclasses.replace(unfitted, quartiles=np.quantile(extremes, [0.25, 0.75],
                                                                   axis=0).astype(np.float32))

    def extremes(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """[N, 2K] each filter's maximum over the image, then its negated minimum."""
        filters = jnp.asarray(self.filters)
        return _in_chunks(lambda rows: _extremes(filters, (rows - self.mean) / self.scale),
                          x, chunk)

    def __call__(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """float32 rows [N, C * H * W + 2K] of raw images x [N, C, H, W]: the pixels as they
        are, then each extreme's excess over its far-out fence (0 for most rows)."""
        q1, q3 = self.quartiles
        excess = (self.extremes(x, chunk) - q3) / np.maximum(q3 - q1, 1e-6) - FENCE
        return np.concatenate([np.asarray(x, np.float32).reshape(len(x), -1),
                               np.maximum(excess, 0.0)], axis=1)

    def image_maps(self, maps: np.ndarray) -> np.ndarray:
        """[..., F] maps over the rows -> [..., C, H, W] over the image (the pixels' part)."""
        pixels = int(np.prod(self.image_shape))
        return maps[..., :pixels].reshape(maps.shape[:-1] + self.image_shape)


@jax.jit
def _extremes(filters, scaled):
    responses = jax.lax.conv_general_dilated(
        jnp.moveaxis(scaled, 1, -1), filters, (1, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.concatenate([responses.max(axis=(1, 2)), -responses.min(axis=(1, 2))], axis=-1)


def _channel_stats(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """[1, C, 1, 1] mean and standard deviation of the raw inputs' channels, from the first
    `STATS_ROWS` rows of each split."""
    sample = np.concatenate([x[:STATS_ROWS] for x in
                             (dataset.x_labeled, dataset.x_unlabeled, dataset.x_target)])
    mean = sample.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    scale = np.maximum(sample.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64), 1e-6)
    return mean.astype(np.float32), scale.astype(np.float32)


def _in_chunks(apply, x: np.ndarray, chunk: int) -> np.ndarray:
    """np.concatenate of apply(rows) over chunks of float32 rows of x, each padded with zero
    rows to one compiled shape."""
    chunk = min(chunk, training.bucket_rows(len(x)))  # few rows: a smaller program
    out = []
    for start in range(0, len(x), chunk):
        rows = np.asarray(x[start:start + chunk], np.float32)
        if len(rows) < chunk:
            rows = np.concatenate([rows, np.zeros((chunk - len(rows),) + rows.shape[1:],
                                                  np.float32)])
        out.append(np.asarray(apply(rows))[:len(x) - start])
    return np.concatenate(out)


@functools.lru_cache(maxsize=4)
def _jitted_apply(module):
    return jax.jit(module.apply)


ImageEncoder = TrunkEncoder | PixelsAndPatterns


@dataclasses.dataclass(frozen=True)
class OnImages:
    """Heads trained on encoded rows, applied to raw images (for occlusion maps)."""
    ensemble: training.TrainedEnsemble
    encoder: ImageEncoder

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [H, N, C] of every head on raw images x [N, C, H, W]."""
        return self.ensemble.predict_proba(self.encoder(x))


def encode(dataset: Dataset, config: Config) -> tuple[Dataset, ImageEncoder | None]:
    """The data set as the heads see it, and the encoder that made it: colour images become
    trunk features (`uses_trunk`), other images gain local-pattern features
    (`uses_patterns`); vectors are returned as they are, with None."""
    if uses_trunk(dataset.input_shape, config):
        encoder = TrunkEncoder.fit(dataset, config)
    elif uses_patterns(dataset.input_shape, config):
        encoder = PixelsAndPatterns.fit(dataset, config)
    else:
        return dataset, None
    return dataclasses.replace(dataset, x_labeled=encoder(dataset.x_labeled),
                               x_unlabeled=encoder(dataset.x_unlabeled),
                               x_target=encoder(dataset.x_target)), encoder
