"""The training recipes (``configs/*.yaml``) wherever facerec is installed: find, list, copy out.

A wheel carries ``configs/`` as ``facerec/configs/`` (see ``setup.py``); a checkout reads
``configs/`` itself. ``--config NAME.yaml`` uses a local file of that name if there is one, else
the packaged recipe. ``facerec recipes [copy NAME [DEST]]`` lists them or copies one out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facerec.errors import ConfigError
from facerec.io import atomic_write_bytes

#: Options of fit / validate / test that name a config file.
CONFIG_FLAGS = ("--config", "-c")


def recipe_dir() -> Path | None:
    """The wheel's ``facerec/configs`` or the checkout's ``configs/``; None if neither exists."""
    here = Path(__file__).resolve().parent
    if (here / "configs").is_dir():  # a wheel's copy
        return here / "configs"
    if (here.parent / "pyproject.toml").is_file() and (here.parent / "configs").is_dir():
        return here.parent / "configs"  # a checkout (clone, editable install)
    return None


def list_recipes() -> dict[str, Path]:
    """Recipe name (file stem) -> path, sorted by name; empty when no recipes are installed."""
    d = recipe_dir()
    return {} if d is None else {p.stem: p for p in sorted(d.glob("*.yaml"))}


def find_recipe(name: str) -> Path:
    """The packaged recipe called ``name`` (``quickstart``, ``quickstart.yaml`` or
    ``configs/quickstart.yaml``). Raises :class:`ConfigError` naming the known recipes."""
    stem = Path(name).name.removesuffix(".yaml")
    recipes = list_recipes()
    if stem not in recipes:
        known = ", ".join(recipes) or "none installed"
        raise ConfigError(f"no recipe called {name!r}; expected one of: {known}")
    return recipes[stem]


def resolve_config(value: str) -> tuple[str, bool]:
    """Map a ``--config`` value to a file: (path, True when it is a packaged recipe). A missing
    ``NAME.yaml`` or ``configs/NAME.yaml`` becomes the recipe of that name, if there is one."""
    p = Path(value)
    if p.exists() or not value.endswith((".yaml", ".yml")) or str(p.parent) not in (".", "configs"):
        return value, False
    try:
        return str(find_recipe(value)), True
    except ConfigError:
        return value, False


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` of fit/validate/test with every ``--config`` value resolved (each packaged recipe
    used named on stderr); a missing bare ``NAME.yaml`` that is no recipe is a ConfigError."""
    out = list(argv)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if not (eq and flag in CONFIG_FLAGS) and not (arg in CONFIG_FLAGS and i + 1 < len(out)):
            continue
        given = value if eq else out[i + 1]
        path, packaged = resolve_config(given)
        if eq:
            out[i] = f"{flag}={path}"
        else:
            out[i + 1] = path
        if packaged:
            print(f"facerec: using the packaged recipe {path}", file=sys.stderr)
        elif not Path(given).exists() and Path(given).parent == Path("."):
            known = ", ".join(list_recipes()) or "none installed"
            raise ConfigError(
                f"--config {given}: no such file here and no packaged recipe of that name; "
                f"expected a path or one of: {known} (facerec recipes)"
            )
    return out


def _summary(path: Path) -> str:
    """First comment line of a recipe, without the '#'."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def main(argv: list[str] | None = None) -> int:
    """``facerec recipes [list]`` and ``facerec recipes copy NAME [DEST] [--force]``."""
    parser = argparse.ArgumentParser(
        prog="facerec recipes",
        description="List the training recipes installed with facerec, or copy one out to edit. "
        "`facerec fit --config NAME.yaml` uses a packaged recipe when no local file has that name.",
    )
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("list", help="list the recipes (the default)")
    cp = sub.add_parser("copy", help="copy a recipe to DEST (default ./NAME.yaml)")
    cp.add_argument("name", help="recipe name, e.g. quickstart or arcface_r50.yaml")
    cp.add_argument("dest", nargs="?", help="file or existing folder to copy to")
    cp.add_argument("--force", action="store_true", help="overwrite DEST if it exists")
    args = parser.parse_args(argv)
    if args.action == "copy":
        src = find_recipe(args.name)
        dest = Path(args.dest) if args.dest else Path(src.name)
        if dest.is_dir():
            dest = dest / src.name
        if dest.exists() and not args.force:
            raise ConfigError(f"{dest} exists; pass --force to overwrite it")
        atomic_write_bytes(dest, src.read_bytes())
        print(f"copied {src} -> {dest}")
        return 0
    if not (recipes := list_recipes()):
        raise ConfigError("no recipes found with this installation of facerec")
    width = max(len(n) for n in recipes)
    print(f"recipes in {recipe_dir()} (facerec fit --config NAME.yaml):")
    for name, path in recipes.items():
        print(f"  {name:<{width}}  {_summary(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
