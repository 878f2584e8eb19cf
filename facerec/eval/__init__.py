"""Evaluation: verification benchmarks (.bin, LFW, pairs CSV, synthetic), identification, reports.

Submodules are imported on demand: ``benchmarks`` (readers), ``identification`` (FAISS search,
CMC, DIR@FAR), ``embed`` (scoring pairs), ``report`` (console table, JSON, plots), ``callback``
(in-training evaluation), ``cli``. The pair-verification maths (k-fold accuracy, ROC, EER,
TAR@FAR) is :mod:`facerec.metrics.verification`, below training, so validation during ``fit``
uses it too.
"""
