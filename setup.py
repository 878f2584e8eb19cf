"""Build hook: copy the recipes (configs/*.yaml, the source of truth) into the wheel.

Everything else about the package is declared in pyproject.toml. A wheel carries the recipes as
``facerec/configs/*.yaml``, so ``facerec fit --config quickstart.yaml`` works after a plain
``pip install``; an editable install reads ``configs/`` in the checkout (facerec/recipes.py).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithRecipes(build_py):
    """build_py that also copies configs/*.yaml to <build>/facerec/configs/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads configs/ in the checkout
        target = Path(self.build_lib) / "facerec" / "configs"
        target.mkdir(parents=True, exist_ok=True)
        for src in sorted((HERE / "configs").glob("*.yaml")):
            shutil.copyfile(src, target / src.name)


setup(cmdclass={"build_py": BuildPyWithRecipes})
