"""The way onto the lent GPU machine: which wheels to carry, and a check that they suffice.

That machine (Python 3.12, no network) already has torch, torchvision, Lightning, numpy,
OpenCV, matplotlib, tqdm, SciPy, PyYAML and onnxruntime, but not albumentations, jsonargparse or
faiss. So facerec goes there as its own wheel installed with ``--no-deps``, beside the CPython
3.12 wheels of what is missing (``CARRIED``, with the packages those need), all in ``.whl/``
(git-ignored)::

    python tools/bench/device_install.py download      # here, with PyPI: fills .whl/
    python tools/bench/device_install.py check         # offline: does it all fit? (exit 1 if not)
    python tools/bench/device_install.py command       # the command to start the device run with

and on the device machine (``carry: [".whl"]``)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
    PYTHONUNBUFFERED=1 python3 tools/bench/gpu_suite.py --out $OUT

``check`` compares every requirement of facerec (pyproject.toml's ``dependencies`` and its
``onnx`` extra, which the suite's onnx part uses) with the versions the device's package list
gives (``DEVICE``, read from the device tool's KINDS.md, 2026-11) and the carried wheels; with
``--wheels DIR`` also that every carried wheel is there, installs for CPython 3.12 on manylinux
x86-64, and finds what it requires itself (its METADATA) carried or on the device.
tests/tools/test_gpu_suite.py dry-runs all of it on the CPU with ``--python`` of the test's own
interpreter (the same commands; wheels for that version).
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import default_environment
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
#: main test suite runs with here; pyproject.toml's floors were tested with older ones).
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

#: pyproject.toml's extras that the suite uses on the device, checked with the dependencies.
EXTRAS = ("onnx",)
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
DEVICE_PYTHON = "3.12"
DEVICE_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; "
    "PYTHONUNBUFFERED=1 python3 tools/bench/gpu_suite.py --out $OUT"
)


def requirements() -> list[Requirement]:
    """facerec's install requirements and those of ``EXTRAS``, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for e in EXTRAS for r in project["optional-dependencies"][e]]
    return [Requirement(r) for r in project["dependencies"] + extras]


def _unmet(req: Requirement) -> str | None:
    """Why ``req`` is not met by the carried wheels or the device's packages; None if it is
    (or if the device's list gives no version to compare)."""
    name = canonicalize_name(req.name)
    if name not in CARRIED and name not in DEVICE:
        return f"{req}: neither on the device nor carried"
    have = CARRIED.get(name) or DEVICE.get(name)
    if have is None or req.specifier.contains(Version(have), prereleases=True):
        return None
    return f"{req}: {have} {'carried' if name in CARRIED else 'on the device'} does not satisfy it"


def _installs_on(python: str, interpreter: str, abi: str, platform: str) -> bool:
    """Whether a wheel tag installs on CPython ``python`` ("3.12"), manylinux x86-64."""
    if platform != "any" and not (platform.startswith("manylinux") and "x86_64" in platform):
        return False
    minor = int(python.split(".")[1])
    if abi == "abi3":  # the stable ABI: built for 3.N, runs on 3.N and later
        return interpreter.startswith("cp3") and int(interpreter[3:]) <= minor
    cp = f"cp3{minor}"
    return interpreter in (cp, "py3", f"py3{minor}") and abi in (cp, "none")


def _wheel_requirements(wheel: Path, extras: set[str], python: str) -> list[Requirement]:
    """What ``wheel`` requires on CPython ``python`` on Linux x86-64 with ``extras``."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        reqs = email.parser.Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist")
    env = default_environment() | {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
    }
    out = []
    for r in map(Requirement, reqs or []):
        if r.marker is None or any(r.marker.evaluate(env | {"extra": e}) for e in extras | {""}):
            out.append(r)
    return out


def check(wheels: Path | None = None, python: str = DEVICE_PYTHON) -> list[str]:
    """Problems with installing facerec on the device this way; empty when there are none.
    ``python``: the version the wheels in ``wheels`` must install on."""
    reqs = requirements()
    problems = [p for p in map(_unmet, reqs) if p]
    if wheels is None:
        return problems
    found: dict[str, tuple[str, Path]] = {}
    for w in sorted(wheels.glob("*.whl")):
        name, version, _, tags = parse_wheel_filename(w.name)
        if not any(_installs_on(python, t.interpreter, t.abi, t.platform) for t in tags):
            problems.append(f"{w.name}: does not install on CPython {python} manylinux x86-64")
        if name in found:
            problems.append(f"{name}: two wheels ({found[name][0]} and {version}); keep one")
        found[name] = (str(version), w)
    for name, version in CARRIED.items():  # canonical names
        if name not in found:
            problems.append(f"{name}=={version}: no wheel in {wheels}")
        elif found[name][0] != version:
            problems.append(f"{name}: {found[name][0]} in {wheels}, not {version}")
    if "facerec" not in found:
        problems.append(f"facerec: no wheel in {wheels} (`pip wheel --no-deps -w {wheels} .`)")
    # what the carried wheels require themselves, with the extras asked of them (by facerec,
    # or by each other: jsonargparse[signatures] asks for jsonargparse[typing-extensions])
    asked: dict[str, set[str]] = {}
    todo = list(reqs)
    while todo:
        r = todo.pop()
        name = canonicalize_name(r.name)
        extras = set(r.extras) | {""}
        if name not in CARRIED or name not in found or extras <= asked.get(name, set()):
            continue
        asked[name] = asked.get(name, set()) | extras
        for q in _wheel_requirements(found[name][1], asked[name], python):
            if canonicalize_name(q.name) != name and (why := _unmet(q)):
                problems.append(f"{name} requires {why}")
            todo.append(q)
    return list(dict.fromkeys(problems))


def download(dest: Path, python: str = DEVICE_PYTHON, source: Path = ROOT) -> int:
    """Fetch the carried wheels (CPython ``python``, manylinux x86-64) and build facerec's from
    ``source``."""
    pip = [sys.executable, "-m", "pip"]
    cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python]
    cmd += ["--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += [f"{n}=={v}" for n, v in CARRIED.items()]
    if subprocess.run(cmd).returncode:
        return 1
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(source)]
    return subprocess.run(build).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["download", "check", "command"])
    parser.add_argument("--wheels", default=str(ROOT / ".whl"), help="the wheel folder")
    parser.add_argument(
        "--python", default=DEVICE_PYTHON, help="the wheels' CPython version (a dry run here)"
    )
    args = parser.parse_args(argv)
    wheels = Path(args.wheels)
    if args.action == "command":
        print(DEVICE_COMMAND)
        return 0
    if args.action == "download":
        wheels.mkdir(parents=True, exist_ok=True)
        return download(wheels, args.python)
    problems = check(wheels if wheels.is_dir() else None, args.python)
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
