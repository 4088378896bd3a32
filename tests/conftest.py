"""Shared fixtures: generated sets are built once per test session."""

import functools

import pytest

from ambig_jax.datasets import generator


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: trains for long; left out of the fast tier, pytest -m 'not slow'")


@functools.lru_cache(maxsize=None)
def generated(dataset_id: int, seed: int = 0) -> generator.GeneratedSet:
    return generator.generate(dataset_id, seed)


@pytest.fixture(scope="session")
def gen():
    return generated


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    """A data folder holding the generated toy set (public/ and hidden/)."""
    data_dir = tmp_path_factory.mktemp("data")
    generator.save(generated(0), data_dir)
    return data_dir
