"""Generated sets cached on disk, so a run with no data folder builds what it needs once."""

import os
import pathlib
import re

from ambig_jax.datasets import catalog
from ambig_jax.datasets import generator
from ambig_jax.datasets import loader

CACHE_ENV = "AMBIG_JAX_CACHE"


def root() -> pathlib.Path:
    """`$AMBIG_JAX_CACHE`, default `~/.cache/ambig_jax`."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "ambig_jax")


def generated_dir(seed: int, embedding: str = "tanh") -> pathlib.Path:
    """`<root>/generated/seed<S>`: the sets generated with seed S (`seed<S>-<embedding>` with
    another embedding family than the default, `generator.EMBEDDINGS`)."""
    suffix = "" if embedding == "tanh" else f"-{embedding}"
    return root() / "generated" / f"seed{seed}{suffix}"


def embedding_of(path: str | os.PathLike | None) -> str:
    """The embedding family that a generated set's path names (`generated_dir`'s inverse): the
    family of its `seed<S>-<family>` folder, else "tanh" (a `seed<S>` folder, or a folder not
    generated here, whose sets have no family to tell)."""
    for part in pathlib.PurePath(path).parts if path else ():
        found = re.fullmatch(r"seed\d+-(\w+)", part)
        if found and found.group(1) in generator.EMBEDDINGS:
            return found.group(1)
    return "tanh"


def compiled_dir() -> pathlib.Path:
    """`<root>/xla`: XLA's persistent compilation cache (`training.use_compilation_cache`)."""
    return root() / "xla"


def ensure_generated(data_dir, dataset_id: int, seed: int, embedding: str = "tanh") -> None:
    """Generates set `dataset_id` into `data_dir` unless its files and hidden labels exist."""
    data_dir = pathlib.Path(data_dir)
    info = catalog.info_for(dataset_id)
    folder = data_dir / "public" / info.name
    complete = all((folder / f).is_file() for f in loader.FILES) and \
        generator.hidden_labels_path(data_dir, dataset_id).is_file()
    if not complete:
        generator.save(generator.generate(dataset_id, seed, embedding=embedding), data_dir)


def parse_ids(spec: str, generated: bool = True) -> list[int]:
    """'all' -> every generatable id; '1,23' -> [1, 23].

    Args:
      spec: the `--dataset` flag's value.
      generated: the sets will be generated here (no folder of the original sets is given), so
        every id must be one this project can generate.

    Raises:
      ValueError: naming the spec, when it is neither, names no set, or (`generated`) names a
        set that cannot be generated offline.
    """
    if spec == "all":
        return list(catalog.GENERATABLE_IDS)
    try:
        ids = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"dataset must be 'all' or comma-separated ids, got {spec!r}") from None
    if not ids:
        raise ValueError(f"dataset names no set: {spec!r}")
    not_generatable = [i for i in ids if i not in catalog.GENERATABLE_IDS]
    if generated and not_generatable:
        raise ValueError(
            f"dataset {spec!r}: set {', '.join(map(str, not_generatable))} cannot be generated "
            f"offline (these can: {', '.join(map(str, catalog.GENERATABLE_IDS))}); "
            "experiments.run reads any set from a folder of the original sets (--data_dir)")
    return ids
