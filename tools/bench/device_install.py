"""The way onto the lent GPU machine: which wheels to carry, and a check that they suffice.

That machine (Python 3.12, no network) already has torch, torchvision, Lightning, numpy,
OpenCV, matplotlib, tqdm, SciPy and PyYAML, but not albumentations, jsonargparse or faiss. So
facerec goes there as its own wheel installed with ``--no-deps``, beside the CPython 3.12 wheels
of what is missing (``CARRIED``, with the packages those need), all in ``.whl/`` (git-ignored)::

    python tools/bench/device_install.py download      # here, with PyPI: fills .whl/
    python tools/bench/device_install.py check         # offline: does it all fit? (exit 1 if not)
    python tools/bench/device_install.py command       # the command to start the device run with

and on the device machine (``carry: [".whl"]``)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
    PYTHONUNBUFFERED=1 python3 tools/bench/gpu_suite.py --out $OUT

``check`` compares every requirement of facerec (pyproject.toml's ``dependencies``) with the
versions the device's package list gives (``DEVICE``, read from the device tool's KINDS.md,
2026-11) and the carried wheels, and with ``--wheels DIR`` also that every carried wheel is
there and installs for CPython 3.12 on manylinux x86-64.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

#: On the GPU machine (KINDS.md, 2026-11): name -> version, or None where the list names the
#: package without its version.
DEVICE: dict[str, str | None] = {
    "torch": "2.11.0",
    "torchvision": "0.26.0",
    "pytorch-lightning": "2.6.6",
    "lightning": None,
    "torchmetrics": "1.9.0",
    "numpy": "2.5.2",
    "onnx": "1.23.1",
    "onnxruntime": "1.30.0",
    "onnxscript": "0.7.2",
    "opencv-python-headless": None,
    "matplotlib": None,
    "tqdm": None,
    "scipy": None,
    "pyyaml": None,
    "packaging": None,
    "typing-extensions": None,
    "pillow": None,
}

#: Carried as CPython 3.12 wheels: facerec's missing requirements and theirs (the versions the
#: test suite runs with here).
CARRIED: dict[str, str] = {
    "albumentations": "2.0.8",
    "albucore": "0.0.24",
    "pydantic": "2.14.4",
    "pydantic-core": "2.50.5",
    "annotated-types": "0.8.0",
    "typing-inspection": "0.4.5",
    "stringzilla": "5.3.2",
    "simsimd": "6.5.16",
    "jsonargparse": "4.53.0",
    "docstring-parser": "0.18.0",
    "typeshed-client": "2.15.0",
    "faiss-cpu": "1.15.1",
}

PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
DEVICE_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; "
    "PYTHONUNBUFFERED=1 python3 tools/bench/gpu_suite.py --out $OUT"
)


def requirements() -> list[Requirement]:
    """facerec's install requirements, from pyproject.toml."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def _installs_on_cp312(interpreter: str, abi: str, platform: str) -> bool:
    """Whether a wheel tag installs on CPython 3.12, manylinux x86-64."""
    if platform != "any" and not (platform.startswith("manylinux") and "x86_64" in platform):
        return False
    if abi == "abi3":  # the stable ABI: built for 3.N, runs on 3.N and later
        return interpreter.startswith("cp3") and int(interpreter[3:]) <= 12
    return interpreter in ("cp312", "py3", "py312") and abi in ("cp312", "none")


def check(wheels: Path | None = None) -> list[str]:
    """Problems with installing facerec on the device this way; empty when there are none."""
    problems = []
    for req in requirements():
        name = canonicalize_name(req.name)
        have = CARRIED.get(name) or DEVICE.get(name)
        if name not in CARRIED and name not in DEVICE:
            problems.append(f"{req}: neither on the device nor carried")
        elif have is not None and not req.specifier.contains(Version(have), prereleases=True):
            where = "carried" if name in CARRIED else "on the device"
            problems.append(f"{req}: {have} {where} does not satisfy it")
    if wheels is not None:
        found = {}
        for w in wheels.glob("*.whl"):
            name, version, _, tags = parse_wheel_filename(w.name)
            ok = any(_installs_on_cp312(t.interpreter, t.abi, t.platform) for t in tags)
            if not ok:
                problems.append(f"{w.name}: does not install on CPython 3.12 manylinux x86-64")
            if name in found:
                problems.append(f"{name}: two wheels ({found[name]} and {version}); keep one")
            found[name] = version
        for name, version in CARRIED.items():
            if canonicalize_name(name) not in found:
                problems.append(f"{name}=={version}: no wheel in {wheels}")
        if "facerec" not in found:
            problems.append(f"facerec: no wheel in {wheels} (`pip wheel --no-deps -w {wheels} .`)")
    return problems


def download(dest: Path) -> int:
    """Fetch the carried wheels (CPython 3.12, manylinux x86-64) and build facerec's."""
    pip = [sys.executable, "-m", "pip"]
    cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
    cmd += ["--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += [f"{n}=={v}" for n, v in CARRIED.items()]
    if subprocess.run(cmd).returncode:
        return 1
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(ROOT)]
    return subprocess.run(build).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["download", "check", "command"])
    parser.add_argument("--wheels", default=str(ROOT / ".whl"), help="the wheel folder")
    args = parser.parse_args(argv)
    wheels = Path(args.wheels)
    if args.action == "command":
        print(DEVICE_COMMAND)
        return 0
    if args.action == "download":
        wheels.mkdir(parents=True, exist_ok=True)
        return download(wheels)
    problems = check(wheels if wheels.is_dir() else None)
    for p in problems:
        print(f"device_install: {p}", file=sys.stderr)
    if not problems:
        size = sum(w.stat().st_size for w in wheels.glob("*.whl")) if wheels.is_dir() else 0
        print(
            f"ok: facerec's requirements are met on the device ({size / 2**20:.1f} MiB of wheels)"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
