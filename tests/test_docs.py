"""The docs a newcomer reads agree with the code: the README stays short, docs/cli.md documents exactly the
options the parser defines, and the README's quick-start commands run.

The cheap checks run here. The Python quick start runs the whole pipeline, so `.ci/run` runs it through
`python tests/test_docs.py`, which compares what it prints with the output the README shows.
"""

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
CI = ROOT / ".ci" / "run"
README_MAX_BYTES = 12_000
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def fenced_blocks(text: str, heading: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block in the README section under `## heading`."""
    section = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, f"README has no section {heading!r}"
    return re.findall(r"^```(\w*)\n(.*?)^```", section.group(1), re.S | re.M)


def subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand's parser by its name: "run", ..., "models fetch"."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(subparsers(sub, prefix + name + " "))
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


def documented_options(text: str, commands: set[str]) -> dict[str, set[str]]:
    """Options named in the first cell of the option tables, by subcommand. A row belongs to the commands its
    section's heading names (`## `diarize run`: ...`), or to the one its cell starts with (`verify --x`)."""
    found: dict[str, set[str]] = {c: set() for c in commands}
    section: list[str] = []
    for line in text.splitlines():
        if line.startswith("## "):
            section = [c for c in commands if f"`diarize {c}`" in line]
            continue
        if not line.startswith("| `") or not section:
            continue
        cell = line.split("|")[1].strip().strip("`")
        owners = [c for c in section if cell.startswith(c + " ")] or section
        for owner in owners:
            found[owner] |= set(OPTION.findall(cell))
    return found


def test_readme_is_at_most_12000_bytes():
    assert len(README.read_bytes()) <= README_MAX_BYTES


def test_cli_doc_documents_every_option_of_every_subcommand_and_no_other():
    from diarize.cli import build_parser

    parser = build_parser()
    subs = subparsers(parser)
    text = CLI_DOC.read_text()
    documented = documented_options(text, set(subs))
    for name, sub in subs.items():
        assert options(sub) == documented[name], f"diarize {name}: parser vs docs/cli.md"
    # Options named anywhere else in the page (prose, examples) exist too.
    known = {"--help"}.union(options(parser), *(options(s) for s in subs.values()))
    assert set(OPTION.findall(text)) <= known


def test_readme_cli_quick_start_commands_parse():
    from diarize.cli import build_parser

    blocks = fenced_blocks(README.read_text(), "CLI quick start")
    lines = [line.split("#")[0].strip() for lang, body in blocks if lang == "bash" for line in body.splitlines()]
    commands = [shlex.split(line) for line in lines if line]
    assert commands and all(c[0] == "diarize" for c in commands)
    for argv in commands:
        build_parser().parse_args(argv[1:])  # argparse exits (SystemExit) on an unknown option


def test_ci_runs_the_readme_commands():
    """`.ci/run` installs and tests with the README's own lines and runs its Python quick start."""
    install_run_test = fenced_blocks(README.read_text(), "Install, run, test")[0][1]
    ci = CI.read_text()
    for line in install_run_test.splitlines():
        command = line.split("#")[0].strip()
        if command.startswith("diarize run"):  # CI writes the RTTM outside the checkout
            command = command.rsplit("--out", 1)[0].strip()
        assert command in ci, command
    assert "python tests/test_docs.py" in ci


def test_run_help_names_every_device_and_the_real_thread_default():
    from diarize.cli import build_parser

    run = subparsers(build_parser())["run"]
    helps = {a.option_strings[0]: a.help for a in run._actions if a.option_strings}
    assert all(d in helps["--device"] for d in ("auto", "cpu", "cuda", "cuda:N", "mps"))
    for sub in subparsers(build_parser()).values():  # torch's default, shared among runs for `run` (cores.py)
        assert not any("all cores" in (a.help or "") for a in sub._actions if "--threads" in a.option_strings)


DOCS = ("cli", "pipeline", "performance", "models", "formats")
PATH = re.compile(r"(?<![\w/.-])(?:benchmarks|configs|diarize|docs|tests)/[\w./-]*\w\.(?:py|md|yaml)")
LINK = re.compile(r"\]\(([^)#\s]+)")
MODULE = re.compile(r"python -m (benchmarks(?:\.\w+)+)")


def module_path(name: str) -> str:
    """benchmarks.accuracy.heldout -> benchmarks/accuracy/heldout.py"""
    return name.replace(".", "/") + ".py"


def test_every_file_the_docs_name_exists():
    """Paths (`benchmarks/speed/speed.py`) from the checkout's root, links relative to their page, and the
    modules of `python -m benchmarks.speed.speed` commands."""
    pages = [README, ROOT / "benchmarks" / "RESULTS.md", *(ROOT / "docs" / f"{d}.md" for d in DOCS)]
    for page in pages:
        text = page.read_text()
        missing = [p for p in PATH.findall(text) if not (ROOT / p).exists()]
        missing += [m for m in MODULE.findall(text) if not (ROOT / module_path(m)).is_file()]
        missing += [link for link in LINK.findall(text) if "://" not in link and not (page.parent / link).exists()]
        assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"


def python_quick_start() -> tuple[str, str]:
    """The README's Python quick start and the output it shows."""
    blocks = fenced_blocks(README.read_text(), "Python quick start")
    code = next(body for lang, body in blocks if lang == "python")
    shown = next(body for lang, body in blocks if lang == "")
    return code, shown


def test_python_quick_start_shows_an_output():
    code, shown = python_quick_start()
    assert "print(" in code and shown.strip()


if __name__ == "__main__":
    # Run by .ci/run: the quick start, as a user would, from the checkout's root.
    code, shown = python_quick_start()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    if out.split() != shown.split():
        sys.exit(f"README's Python quick start printed\n{out}\ninstead of\n{shown}")
    print("README Python quick start: output as shown")
