"""The `diarize` command and `python -m diarize`: the CLI (diarize.cli) in a process of its own."""

from __future__ import annotations

import gc
import sys
from typing import NoReturn


def import_pyannote_core_without_notebook() -> None:
    """Import pyannote.core without the notebook helper its __init__ builds for Jupyter display.

    Building it imports matplotlib.pyplot whenever matplotlib is installed (the `test` and `plot`
    extras): ~0.9 s of a command's start-up (benchmarks/RESULTS.md) that a CLI process never uses.
    Blocking the submodule for this one import makes pyannote.core skip it (its own try/except);
    the block is lifted at once, so `--plot` and anything later import matplotlib as usual.
    """
    if "pyannote.core" in sys.modules:
        return
    sys.modules["pyannote.core.notebook"] = None  # type: ignore[assignment]  # None = "import blocked"
    try:
        import pyannote.core  # noqa: F401
    finally:
        del sys.modules["pyannote.core.notebook"]


def defer_numpy_f2py() -> None:
    """Stand in for `numpy.f2py` (NumPy's Fortran wrapper generator) until something reads one of its names.

    SciPy's array-API layer (scipy 1.17 here) copies every public attribute of numpy when `scipy.linalg` is
    first imported, and numpy imports `f2py` on that first access: 0.07-0.1 s of a short command's start-up
    (benchmarks/RESULTS.md, "Start-up") for a module the CLI never calls. The stand-in has the real module's
    file and spec (torch's import scans every module's `__file__`) and loads the real module at the first
    other name read from it.
    """
    if "numpy.f2py" in sys.modules:
        return
    import importlib.util  # binds importlib too
    import types

    import numpy

    spec = importlib.util.find_spec("numpy.f2py")
    if spec is None:
        return
    stand_in = types.ModuleType("numpy.f2py")
    stand_in.__file__, stand_in.__spec__ = spec.origin, spec

    def real_attribute(name: str) -> object:
        if sys.modules.get("numpy.f2py") is stand_in:
            del sys.modules["numpy.f2py"]
        real = importlib.import_module("numpy.f2py")
        numpy.f2py = real
        return getattr(real, name)

    stand_in.__getattr__ = real_attribute  # type: ignore[method-assign]  # a module's own __getattr__ (PEP 562)
    sys.modules["numpy.f2py"] = numpy.f2py = stand_in


def main(argv: list[str] | None = None) -> int:
    import_pyannote_core_without_notebook()
    defer_numpy_f2py()
    from .cli import main as cli_main

    # Objects that live as long as the process, frozen so that the collector never walks them again.
    # The final collection at exit walked the ~170,000 that importing torch leaves: ~0.3 s of a short
    # command's wall time (benchmarks/RESULTS.md, "Start-up"). Commands import torch only when they need it,
    # so everything is frozen again once the command is done.
    gc.freeze()
    try:
        return cli_main(argv)
    finally:
        gc.freeze()


def command() -> NoReturn:
    """The `diarize` console script and `python -m diarize`: `main`, then `exit_now`."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process as the interpreter would, less its teardown of every module: with torch loaded, that
    teardown (freeing memory the OS frees anyway) was 0.1-0.2 s of a short command (benchmarks/RESULTS.md,
    "Start-up"). As at a normal exit, non-daemon threads are joined first and the atexit callbacks run (Ray's
    shutdown, logging's flush, temporary directories' cleanup); then the standard streams are flushed. If
    that fails (a closed pipe), the normal exit takes over and reports it as Python does.
    """
    import atexit
    import os
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter's own exit does first
    atexit._run_exitfuncs()  # runs each callback once and clears them, as the interpreter would
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    command()
