"""Every benchmark script still imports and parses its command line: a script that no longer runs
(an import renamed under it) fails here, not months later in front of a reader of RESULTS.md."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.rglob("*.py"))


def has_main(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text()


@pytest.mark.parametrize("path", SCRIPTS, ids=[str(p.relative_to(BENCHMARKS)) for p in SCRIPTS])
def test_benchmark_imports(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing a script runs nothing but its imports and definitions."""
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)


@pytest.mark.parametrize(
    "path", [p for p in SCRIPTS if has_main(p)], ids=[str(p.relative_to(BENCHMARKS)) for p in SCRIPTS if has_main(p)]
)
def test_benchmark_help(path: Path) -> None:
    out = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage:"), out.stdout[:200]


def test_every_runnable_benchmark_has_a_main() -> None:
    """Helpers are named with a leading underscore or are imported by a script; the rest run."""
    helpers = {"_recipe.py", "splits.py"}
    assert sorted(p.name for p in SCRIPTS if not has_main(p)) == sorted(helpers)
