"""Progress hooks and stage timing for the pipeline's stages.

A user hook comes in one of two shapes (ours or pyannote.audio's `ProgressHook`); `StageHook` calls it in
its own shape, and `StageTimer` adds up wall time per stage.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

STAGES = ("load", "vad", "windows", "embeddings", "clustering", "output")

# A progress hook, in either of two shapes (told apart by whether it takes a `file` keyword):
#   ours:       hook(stage, completed, total), called as each stage advances ("vad": samples,
#               "embeddings": windows, "clustering": 0 then 1);
#   pyannote's: hook(step_name, step_artifact, file=None, total=None, completed=None), as
#               pyannote.audio's ProgressHook: the same progress calls with step_artifact None, then
#               hook(stage, artifact, file={"uri": ...}) once per finished stage: "vad" the speech
#               regions, (K, 2) seconds; "embeddings" one (N_s, D) float32 array per scale, finest
#               last; "clustering" the (N,) cluster of each finest-scale window.
# An exception raised by the hook cancels the run.
Hook = Callable[..., None]


def _takes_file(hook: Hook) -> bool:
    """Whether `hook` is pyannote-shaped: it accepts a `file` keyword (or any keyword)."""
    try:
        params = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: ours, the simpler call
        return False
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(p.kind == inspect.Parameter.VAR_KEYWORD or (p.name == "file" and p.kind in keyword) for p in params)


class StageHook:
    """A user `Hook` called in its own shape: `progress(stage, completed, total)` for every hook,
    `finished(stage, artifact)` for pyannote-shaped ones only (ours has no place for the artifact)."""

    def __init__(self, hook: Hook, file: dict):
        self.hook, self.file, self.pyannote = hook, file, _takes_file(hook)

    def progress(self, stage: str, completed: int, total: int) -> None:
        if self.pyannote:
            self.hook(stage, None, file=self.file, total=total, completed=completed)
        else:
            self.hook(stage, completed, total)

    def finished(self, stage: str, artifact: Any) -> None:
        if self.pyannote:
            self.hook(stage, artifact, file=self.file)


class StageTimer:
    """Wall time per stage; a stage entered inside another is not counted twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[list[float]] = []  # [start, time spent in nested stages]

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._stack.append([time.perf_counter(), 0.0])
        try:
            yield
        finally:
            start, nested = self._stack.pop()
            spent = time.perf_counter() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + spent - nested
            if self._stack:
                self._stack[-1][1] += spent

    def iterate(self, items: Iterator[Any], stage: str) -> Iterator[Any]:
        """`items`, with the time spent producing each one counted under `stage`."""
        while True:
            with self(stage):
                item = next(items, None)
            if item is None:
                return
            yield item


def progress_counter(hook: StageHook | None, stage: str, total: int) -> Callable[[int], None] | None:
    if hook is None:
        return None
    done = [0]
    hook.progress(stage, 0, total)

    def advance(n: int) -> None:
        done[0] += n
        hook.progress(stage, done[0], total)

    return advance


def as_steps(hook: Hook | StageHook | None, uri: str) -> StageHook | None:
    """`hook` called in its own shape (a `StageHook` passes through: `diarize` makes one for all stages)."""
    if hook is None or isinstance(hook, StageHook):
        return hook
    return StageHook(hook, {"uri": uri})
