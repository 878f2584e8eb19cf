"""Evaluation: verification benchmarks (.bin, LFW, pairs CSV, synthetic), identification, reports.

Submodules are imported on demand: ``benchmarks`` (readers), ``identification`` (FAISS search,
CMC, DIR@FAR), ``embed`` (scoring pairs), ``report`` (console table, JSON, plots), ``callback``
(in-training evaluation), ``evaluation`` (``facerec eval`` as a function:
:func:`evaluate` with :class:`EvalOptions`, importable from here), ``cli`` (its flags),
``embed_cli`` (``facerec embed``), ``verify_cli`` (``facerec verify``), ``doctor_cli``. The
pair-verification maths (k-fold accuracy, ROC, EER, TAR@FAR) is
:mod:`facerec.metrics.verification`, below training, so validation during ``fit`` uses it too.
"""

from typing import Any

#: the Python API, imported on first use: ``from facerec.eval import evaluate, EvalOptions``
_API = {"evaluate", "EvalOptions", "IdentificationSet"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module("facerec.eval.evaluation"), name)
    raise AttributeError(f"module 'facerec.eval' has no attribute {name!r}")


__all__ = sorted(_API)
