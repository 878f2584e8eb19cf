#!/usr/bin/env python
"""The package's lines, and how many of them are issue 24's (the frontier round).

Issue 23 set a budget: "package lines do not grow (18,456 today) while the pretrained model and
the trust fixes land". Issue 24 (ViT, face-image quality, per-group evaluation, calibrated
confidence) was filed beside it as new features and is not named in that budget, so this
script counts the package twice: every line (``find facerec -name '*.py' | xargs cat | wc -l``,
the number tests/test_architecture.py ratchets), and every line but issue 24's.

Issue 24's lines are, each counted once:
- its own modules (``FRONTIER_MODULES``), whole;
- the functions in shared modules that exist only for its features (``FRONTIER_FUNCTIONS``,
  found with ``ast``, decorators and docstrings included);
- any other line ``git blame`` gives to one of its commits (``FRONTIER_COMMITS``).
Lines of its features that later commits rewrote (its flags in shared parsers, its keys in
shared reports) are not found by blame and count as the budget's: the split errs against it.

Run from the repository root: ``python tools/package_lines.py`` (needs git and the history).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "facerec"
BUDGET = 18_456  # issue 23: the package when it was filed (2588e95)

FRONTIER_MODULES = (
    "facerec/models/vit.py",
    "facerec/metrics/calibration.py",
    "facerec/metrics/groups.py",
    "facerec/metrics/quality.py",
    "facerec/eval/groups.py",
    "facerec/eval/quality.py",
    "facerec/eval/verify_cli.py",
)
FRONTIER_FUNCTIONS = {
    "facerec/eval/benchmarks.py": ("read_rfw",),
    "facerec/eval/evaluation.py": ("_calibration_benchmark", "_calibrate"),
    "facerec/eval/html_report.py": ("groups_html", "_quality", "_calibration"),
    "facerec/eval/report.py": (
        "quality_cells",
        "_quality_lines",
        "_calibration_lines",
        "plot_erc",
        "plot_reliability",
    ),
    "facerec/inference/checkpoint.py": ("checkpoint_calibration",),
}
#: issue 24's commits (ViT; calibration, quality, verify; embed/doctor --quality; groups, RFW)
FRONTIER_COMMITS = (
    "fd1584e",
    "93e8be3",
    "7300b21",
    "ff52381",
    "b7ed78d",
    "5634d3f",
    "dcb0cdd",
    "df45a2e",
    "1cc6743",
    "22f9035",
    "d8be158",
)


def function_lines(path: Path, names: tuple[str, ...]) -> set[int]:
    """1-based line numbers of the top-level functions ``names`` in ``path``."""
    tree = ast.parse(path.read_text())
    found = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    if missing := set(names) - set(found):
        sys.exit(f"{path}: no top-level function {sorted(missing)}; update FRONTIER_FUNCTIONS")
    out: set[int] = set()
    for name in names:
        n = found[name]
        start = min([n.lineno, *(d.lineno for d in n.decorator_list)])
        out |= set(range(start, n.end_lineno + 1))
    return out


def blamed_lines(rel: str, commits: set[str]) -> set[int]:
    """1-based line numbers of ``rel`` that ``git blame`` gives to one of ``commits``."""
    text = subprocess.run(
        ["git", "blame", "--porcelain", "HEAD", "--", rel],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out: set[int] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and len(parts[0]) == 40 and parts[0][:7] in commits:
            out.add(int(parts[2]))
    return out


def main() -> int:
    commits = {c[:7] for c in FRONTIER_COMMITS}
    total = frontier = 0
    by_file = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_bytes().splitlines())
        total += n
        if rel in FRONTIER_MODULES:
            mine = n
        else:
            lines = blamed_lines(rel, commits)
            if rel in FRONTIER_FUNCTIONS:
                lines |= function_lines(path, FRONTIER_FUNCTIONS[rel])
            mine = len(lines)
        frontier += mine
        if mine:
            by_file.append((mine, rel))
    print("issue 24's lines by file:")
    for n, rel in sorted(by_file, reverse=True):
        print(f"  {n:5d}  {rel}")
    rest = total - frontier
    print(f"package: {total} lines; issue 24's: {frontier}; the rest: {rest}")
    verdict = "within" if rest <= BUDGET else f"{rest - BUDGET} over"
    print(f"issue 23's budget for the rest: {BUDGET} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
