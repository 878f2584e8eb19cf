"""Evaluation: verification benchmarks (.bin, LFW, pairs CSV, synthetic), identification, reports.

Submodules are imported on demand; :func:`evaluate` and :class:`EvalOptions` (``facerec eval``
as a function, :mod:`.evaluation`) from here too. The pair-verification maths is
:mod:`facerec.metrics.verification`, below training, so validation during ``fit`` uses it too.
"""

import importlib
from typing import Any

#: the Python API, imported on first use: ``from facerec.eval import evaluate, EvalOptions``
_API = {"evaluate", "EvalOptions", "IdentificationSet"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("facerec.eval.evaluation"), name)
    raise AttributeError(f"module 'facerec.eval' has no attribute {name!r}")


__all__ = sorted(_API)
