"""The one way every entry point builds its `Config`: a preset and typed overrides.

  python -m experiments.run --dataset=1 --config=smoke --set steps=300 --set rule.decided=0.99

`--config` names a preset (`config.PRESETS`: default, long, smoke); each `--set field=value` overrides
one field, typed from the dataclass (`Config.override`): `hidden=512,256`, `refine=false`,
`rule.exact_prior=0`. Unknown fields and bad values stop the run with a message that lists the
fields. `--noprogress` turns the progress bars off (they are never drawn into a log file);
`--nocompilation_cache` keeps compiled programs from being stored between runs. The flags that
several entry points share are read here too: `--dataset` (`dataset_ids`), `--seeds`
(`define_seeds`) and `--jobs` (`define_jobs`), so that a bad value stops every one of them
before any work, with a message.
"""

from absl import app
from absl import flags

from ambig_jax import config as config_lib
from ambig_jax import progress
from ambig_jax import training
from ambig_jax import workers
from ambig_jax.datasets import cache

_CONFIG = flags.DEFINE_enum("config", "default", list(config_lib.PRESETS),
                            "Preset configuration; 'long' trains 1500 steps instead of 400, "
                            "'smoke' trains in seconds.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Progress bars on a terminal (never in a log "
                               "file or a pipe); --noprogress turns them off.")
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled programs in $AMBIG_JAX_CACHE/xla (default "
    "~/.cache/ambig_jax/xla) so that a rerun does not compile them again.")
_SET = flags.DEFINE_multi_string("set", [], "Config override field=value (repeatable), e.g. "
                                 "--set steps=300 --set rule.decided=0.99.")


def overrides() -> list[str]:
    """The `--set` assignments given on the command line."""
    return list(_SET.value)


def build(*defaults: str) -> config_lib.Config:
    """The preset with the entry point's own `defaults` (field=value), then the user's `--set`
    overrides applied; a bad override is a usage error. Also applies `--progress` and
    `--compilation_cache`."""
    progress.set_enabled(_PROGRESS.value)
    if _COMPILATION_CACHE.value:
        training.use_compilation_cache(cache.compiled_dir())
    try:
        return config_lib.get(_CONFIG.value, [*defaults, *_SET.value])
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def dataset_ids(spec: str, generated: bool = True) -> list[int]:
    """The set ids that `--dataset` names (`cache.parse_ids`); one it cannot read, or a set that
    cannot be generated where the entry point generates its sets, is a usage error."""
    try:
        return cache.parse_ids(spec, generated)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def define_seeds(default: list[str], help_text: str) -> flags.FlagHolder:
    """A `--seeds=0,1,2` flag; a seed that is not an integer is refused when flags are parsed."""
    holder = flags.DEFINE_list("seeds", default, help_text)
    flags.register_validator("seeds", lambda seeds: all(_is_integer(s) for s in seeds),
                             message="--seeds takes comma-separated integers, e.g. --seeds=0,1,2")
    return holder


def define_jobs(note: str = "", what: str = "Sets solved") -> flags.FlagHolder:
    """A `--jobs` flag: how many sets (`challenge.run_sets`) or other jobs run at once, each in
    a worker process (`workers.py`; 0, the default: `workers.default_jobs`); read it with
    `jobs`."""
    return flags.DEFINE_integer("jobs", 0, f"{what} at once, each in its own process; 0: "
                                "one per CPU core as memory allows, one on a GPU or TPU" + note
                                + ".", lower_bound=0)


def jobs(holder: flags.FlagHolder, num_jobs: int) -> int:
    """The `--jobs` value, 0 resolved to `workers.default_jobs` for `num_jobs` jobs."""
    return holder.value or workers.default_jobs(num_jobs)


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
