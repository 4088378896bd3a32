"""Progress bars: drawn on a terminal while training runs in chunks, never into a log file or
when turned off; the chunking changes nothing in the result."""

import io
import sys

import numpy as np
import pytest

from ambig_jax import progress
from ambig_jax import training
from ambig_jax.config import Config
from ambig_jax.datasets import catalog
from ambig_jax.datasets import loader

CONFIG = Config(strategy="erm", num_heads=1, steps=60, hidden=(8,))


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    return loader.from_arrays(catalog.CATALOG[0], x, (x[:, 0] > 0).astype(int), x[:32], x[32:])


def test_chunks_divide_the_steps():
    assert training.chunk_length(1500) == 30 and 1500 // 30 == 50
    assert training.chunk_length(200) == 4
    assert training.chunk_length(7) == 1 and training.chunk_length(1009) == 1009  # prime
    assert training.chunk_length(60, most_chunks=1) == 60


@pytest.mark.slow  # two trainings of 60 steps; the bar test keeps chunked training in the fast tier
def test_the_chunking_changes_nothing(tiny, monkeypatch):
    chunked = training.train(CONFIG, tiny)
    monkeypatch.setattr(training, "MOST_CHUNKS", 1)  # one scan over every step
    whole = training.train(CONFIG, tiny)
    np.testing.assert_array_equal(chunked.predict_proba(tiny.x_target),
                                  whole.predict_proba(tiny.x_target))


def test_a_bar_on_a_terminal_and_none_in_a_log_file(tiny, monkeypatch):
    for stream, drawn in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        training.train(CONFIG, tiny, desc="[toy] heads")
        text = stream.getvalue()
        assert ("[toy] heads" in text and "/60" in text and "step" in text) == drawn, text
    progress.set_enabled(False)  # --noprogress
    try:
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        training.train(CONFIG, tiny, desc="[toy] heads")
        assert terminal.getvalue() == ""
    finally:
        progress.set_enabled(True)
