"""Progress bars for the long phases (training the heads, the shift test's members, the
refinement's student): steps done, rate and time left, drawn by tqdm.

Shown on a terminal and in a notebook; silent when the output is a log file or a pipe, and
everywhere after `set_enabled(False)` (the entry points' `--noprogress`). Training runs its
compiled scan in chunks and advances the bar between them (`training.train`), so the compiled
step itself stays free of side effects.
"""

import sys

from tqdm.auto import tqdm

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Turns every bar on (where the output can show one) or off."""
    global _enabled
    _enabled = bool(enabled)


def _in_notebook() -> bool:
    """Whether this process is a running Jupyter kernel (not merely one that imported it)."""
    ipython = sys.modules.get("IPython")
    shell = None if ipython is None else ipython.get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


def shown(stream=None) -> bool:
    """Whether bars are drawn: enabled, and `stream` (stderr) is a terminal or a notebook's."""
    stream = sys.stderr if stream is None else stream
    is_terminal = bool(getattr(stream, "isatty", lambda: False)())
    return _enabled and (is_terminal or _in_notebook())


def bar(total: int, desc: str, unit: str = "step", stream=None) -> tqdm:
    """A bar of `total` units, redrawn at most 4 times a second, cleared when done."""
    stream = sys.stderr if stream is None else stream
    return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not shown(stream),
                mininterval=0.25, leave=False, dynamic_ncols=True)
