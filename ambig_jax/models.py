"""Ensemble members and how they are stacked. Shapes: H heads, B samples, C classes.

Each member is an independent network (no shared trunk): members that share a backbone
diversify less, and dense layers vmap well on every backend, while vmapping a convolution over
stacked parameters is pathologically slow on XLA:CPU (docs/method.md). The
backbone follows the input's shape only: vectors and images both go through an MLP on the
flattened, standardised input; `conv` is available for images when a measurement says it pays.
"""

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class MLP(nn.Module):
    """Flattened input -> ReLU dense layers -> class logits."""
    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class ConvNet(nn.Module):
    """[B, C, H, W] images -> two stride-2 3x3 convolutions -> dense -> class logits."""
    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = jnp.moveaxis(x, 1, -1)  # NCHW (the challenge's layout) -> NHWC
        x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2))(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=(2, 2))(x))
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


@dataclasses.dataclass(frozen=True)
class Standardizer:
    """Per-feature centring and scaling, fitted on all inputs (labeled, unlabeled, target).

    A feature's scale is its standard deviation, floored at the mean standard deviation of all
    features: near-constant pixels (an MNIST border holds only the 0.02 noise) must not be
    blown up to the loudness of a stroke, while a large uniform block (a grey half at -2) is
    brought to the scale of the rest.
    """
    mean: np.ndarray  # [*S]
    scale: np.ndarray  # [*S]

    @classmethod
    def fit(cls, *arrays: np.ndarray) -> "Standardizer":
        x = np.concatenate([a.reshape(len(a), -1) for a in arrays]).astype(np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0)
        scale = np.maximum(std, std.mean())
        shape = arrays[0].shape[1:]
        return cls(mean.reshape(shape).astype(np.float32), scale.reshape(shape).astype(np.float32))

    def __call__(self, x):
        return (x - self.mean) / self.scale


def make_backbone(input_shape: Sequence[int], num_classes: int, kind: str = "mlp",
                  hidden: Sequence[int] = (256, 128)) -> nn.Module:
    """The member network for inputs of `input_shape` (without the batch axis)."""
    if kind == "conv":
        if len(input_shape) != 3:
            raise ValueError(f"backbone 'conv' needs [C, H, W] inputs, got {tuple(input_shape)}")
        return ConvNet(tuple(hidden[-1:]), num_classes)
    if kind == "mlp":
        return MLP(tuple(hidden), num_classes)
    raise ValueError(f"unknown backbone {kind!r}; use 'mlp' or 'conv'")


def init_ensemble(module: nn.Module, key: jax.Array, num_heads: int, input_shape):
    """Parameters of H independent members, every leaf with a leading axis H."""
    dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    return jax.vmap(lambda k: module.init(k, dummy))(jax.random.split(key, num_heads))


def ensemble_apply(module: nn.Module, params, x: jax.Array, masks=None) -> jax.Array:
    """Logits [H, B, C] of every member on one batch x [B, *S]; with `masks` [H, *S], member h
    sees x * masks[h] (a masked feature sits at its mean, 0 in standardised units)."""
    if masks is None:
        return jax.vmap(module.apply, in_axes=(0, None))(params, x)
    return jax.vmap(lambda p, m: module.apply(p, x * m))(params, masks)
