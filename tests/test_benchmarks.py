"""Every benchmark script still imports and parses its command line: a script that no longer runs
(an import renamed under it) fails here, not months later in front of a reader of RESULTS.md.

Scripts are modules of the `benchmarks` package, run from the checkout's root as
`python -m benchmarks.<folder>.<script>`, and import one another as modules; none edits sys.path.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.rglob("*.py") if p.name != "__init__.py")
FOLDERS = ("recipes", "accuracy", "speed", "parity")


def module(path: Path) -> str:
    """benchmarks/accuracy/heldout.py -> benchmarks.accuracy.heldout"""
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def has_main(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text()


def test_scripts_live_in_the_purpose_folders_of_one_package():
    assert (BENCHMARKS / "__init__.py").is_file()
    assert sorted({p.parent.name for p in SCRIPTS}) == sorted(FOLDERS)
    assert all((BENCHMARKS / f / "__init__.py").is_file() for f in FOLDERS)


def test_no_script_edits_sys_path():
    assert [p.name for p in SCRIPTS if "sys.path" in p.read_text()] == []


@pytest.mark.parametrize("path", SCRIPTS, ids=[module(p) for p in SCRIPTS])
def test_benchmark_imports(path: Path) -> None:
    """Importing a script runs nothing but its imports and definitions."""
    importlib.import_module(module(path))


RUNNABLE = [p for p in SCRIPTS if has_main(p)]


@pytest.mark.parametrize("path", RUNNABLE, ids=[module(p) for p in RUNNABLE])
def test_benchmark_help(path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module(path), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage:"), out.stdout[:200]


def test_usage_lines_name_modules_that_exist():
    """Docstrings show `python -m benchmarks.<folder>.<script>`, never a path to run."""
    for path in SCRIPTS:
        text = path.read_text()
        assert not re.search(r"python \S*benchmarks/", text), path.name
        for name in re.findall(r"python -m (benchmarks(?:\.\w+)+)", text):
            assert (REPO / (name.replace(".", "/") + ".py")).is_file(), (path.name, name)


def test_every_runnable_benchmark_has_a_main() -> None:
    """Helpers are named with a leading underscore or are imported by a script; the rest run."""
    helpers = {"_recipe.py", "splits.py"}
    assert sorted(p.name for p in SCRIPTS if not has_main(p)) == sorted(helpers)
