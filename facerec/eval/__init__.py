"""Evaluation: verification benchmarks (.bin, LFW, pairs CSV, synthetic), metrics, FAISS search.

Submodules are imported on demand so that ``import facerec.eval.verification`` stays light:
``benchmarks`` (readers), ``verification`` (k-fold accuracy, ROC, EER, TAR@FAR),
``identification`` (FAISS search, CMC, DIR@FAR), ``embed`` (models to embeddings),
``report`` (console table, JSON, plots), ``callback`` (in-training evaluation), ``cli``.
"""
