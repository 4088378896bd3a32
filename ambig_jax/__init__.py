"""ambig_jax: resolve underspecified classification data with a diverse ensemble and 5 labels."""

__version__ = "0.1.0"
