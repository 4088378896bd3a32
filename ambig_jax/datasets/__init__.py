"""Data: the bundled MNIST copy, the challenge's catalogue, its folder format and a generator."""
