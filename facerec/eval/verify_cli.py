"""``facerec verify A B``: are two face images the same person? And the calibration a model carries.

Example::

    facerec verify a.jpg b.jpg --checkpoint runs/r50/last.ckpt --far 1e-3

prints the cosine score of the two embeddings, the calibrated match probability (when the model
carries a :class:`~facerec.metrics.calibration.Calibration`) and the decision at the FAR's
threshold (``same`` when ``score >= threshold``), or at ``--threshold T``. A calibration is stored
in a checkpoint's ``facerec`` entry under ``calibration`` and in an ONNX model's metadata under
``facerec.calibration`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.options import add_align_arguments, aligner_from_args
from facerec.errors import ConfigError, DataError, FacerecError, run_main
from facerec.inference import FileImages, embed_images, load_embedder, read_checkpoint_dict
from facerec.inference.checkpoint import checkpoint_calibration
from facerec.inference.onnx import load_onnx_model, set_metadata_props
from facerec.io import atomic_path, atomic_write_bytes, check_free_space, check_output, write_failed
from facerec.metrics.calibration import CHECKPOINT_KEY, Calibration, calibration_in_onnx_props
from facerec.metrics.verification import far_key

from .embed import add_model_run_arguments


def read_calibration(
    checkpoint: str | os.PathLike[str] | None = None, onnx: str | os.PathLike[str] | None = None
) -> Calibration | None:
    """The calibration a checkpoint or an ONNX model carries (None when it has none); DataError
    for a missing or unreadable file or a bad calibration entry."""
    if (checkpoint is None) == (onnx is None):
        raise ConfigError("give exactly one model: --checkpoint CKPT or --onnx MODEL")
    if onnx is None:
        return checkpoint_calibration(checkpoint)
    props = {m.key: m.value for m in load_onnx_model(onnx).metadata_props}
    return calibration_in_onnx_props(props, str(onnx))


def write_checkpoint_calibration(
    checkpoint: str | os.PathLike[str],
    calibration: Calibration,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Store ``calibration`` in the checkpoint's ``facerec`` entry, atomically, in ``out`` (a
    copy) or in place when None; the path written. DataError: not a facerec checkpoint."""
    import torch

    src = Path(checkpoint)
    ckpt = read_checkpoint_dict(src)
    meta = ckpt.get("facerec")
    if not isinstance(meta, dict):
        raise DataError(
            f"{src}: no 'facerec' entry, so not a facerec checkpoint; expected a .ckpt written "
            "by facerec fit"
        )
    target = src if out is None else check_output(out, "--out", [])
    check_free_space(target, src.stat().st_size)
    meta[CHECKPOINT_KEY] = Calibration.from_dict(calibration.to_dict()).to_dict()
    try:
        with atomic_path(target) as tmp:
            torch.save(ckpt, str(tmp))
    except OSError as e:
        raise write_failed(target, e) from None
    return target


def write_onnx_calibration(
    model_path: str | os.PathLike[str],
    calibration: Calibration,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Store ``calibration`` in an ONNX model's metadata (``facerec.calibration``, JSON); the
    path written: ``out`` (a copy) or the model itself, atomically in both cases."""
    src = Path(model_path)
    model = load_onnx_model(src)
    set_metadata_props(model, {m.key: m.value for m in model.metadata_props}, calibration)
    target = src if out is None else check_output(out, "--out", [])
    try:
        data = model.SerializeToString()
    except ValueError as e:  # protobuf's 2 GiB limit
        raise FacerecError(f"{src}: the model cannot be rewritten in one file ({e})") from None
    check_free_space(target, len(data))
    try:
        atomic_write_bytes(target, data)
    except OSError as e:
        raise write_failed(target, e) from None
    return target


def build_parser() -> argparse.ArgumentParser:
    """The ``facerec verify`` argument parser."""
    p = argparse.ArgumentParser(
        prog="facerec verify",
        description="Compare two face images: the cosine score of their embeddings, the "
        "calibrated probability that they show the same person (when the model carries a "
        "calibration) and the decision at a false-accept rate.",
    )
    p.add_argument("image_a", metavar="A", help="first face image")
    p.add_argument("image_b", metavar="B", help="second face image")
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--checkpoint", metavar="CKPT", help="facerec checkpoint (PyTorch)")
    m.add_argument("--onnx", metavar="MODEL", help="ONNX model written by facerec export")
    p.add_argument(
        "--far",
        type=float,
        default=1e-3,
        help="decide at the threshold of this false-accept rate stored with the calibration "
        "(default 1e-3)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="decide at this cosine score instead (same person when score >= T)",
    )
    p.add_argument("--flip", action="store_true", help="add the mirror image's embedding")
    add_model_run_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_align_arguments(p)
    return p


def verify(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``facerec verify`` for parsed ``args``; the result as a dict."""
    paths = [Path(args.image_a), Path(args.image_b)]
    for p in paths:
        if not p.is_file():
            what = "a folder" if p.is_dir() else "no such file"
            raise DataError(f"{p}: {what}; expected an image file (JPEG, PNG, ...)")
    if not 0.0 < args.far < 1.0:
        raise ConfigError(f"--far {args.far}: expected a false-accept rate in (0, 1)")
    cal = read_calibration(args.checkpoint, args.onnx)
    embedder = load_embedder(args.checkpoint, args.onnx, args.device, 2, args.resize_mode)
    images: Any = FileImages(paths)
    aligner = aligner_from_args(args, args.device)
    if aligner is not None:
        aligner.progress = False
        images = aligner.wrap("images", images, embedder)
        table = aligner.faces("images", FileImages(paths))
        for p, status in zip(paths, table.status, strict=True):
            if status == "no_face":
                raise DataError(
                    f"{p}: no face found (MTCNN, threshold {args.align_threshold}, smallest face "
                    f"{args.align_min_face} px); expected a photo with a visible face, or an "
                    "aligned crop given without --align"
                )
    emb = embed_images(embedder, images, 2, args.flip, 1, normalize=True)
    score = float(np.dot(emb[0], emb[1]))
    threshold, source = None, None
    if args.threshold is not None:
        threshold, source = float(args.threshold), "--threshold"
    elif cal is not None:
        threshold, source = cal.threshold(args.far), f"FAR {far_key(args.far)}"
    fields = ("method", "benchmark", "ece", "n_pairs")
    return {
        "a": str(paths[0]),
        "b": str(paths[1]),
        "model": str(args.checkpoint or args.onnx),
        "score": score,
        "probability": None if cal is None else float(cal.probability(score)),
        "calibration": None if cal is None else {k: getattr(cal, k) for k in fields},
        "far": None if args.threshold is not None or cal is None else args.far,
        "threshold": threshold,
        "same": None if threshold is None else score >= threshold,
        "_source": source,
    }


def format_result(r: dict[str, Any]) -> str:
    """The console lines of a :func:`verify` result."""
    lines = [f"score {r['score']:.4f} (cosine of the two embeddings)"]
    cal = r["calibration"]
    if cal is None:
        lines.append(
            f"match probability: none, {r['model']} carries no calibration; fit and store one "
            "with: facerec eval --checkpoint MODEL --pairs-csv PAIRS.csv --calibrate (writes "
            "MODEL.calibrated.ckpt; --calibrate-in-place stores it in MODEL)"
        )
    else:
        bench = f" on {cal['benchmark']}" if cal["benchmark"] else ""
        lines.append(
            f"match probability {r['probability']:.4f} ({cal['method']} calibration fitted"
            f"{bench}, {cal['n_pairs']} pairs, held-out ECE {cal['ece']:.4f})"
        )
    if r["threshold"] is None:
        lines.append(
            "decision: none without a threshold; give --threshold T or calibrate the model"
        )
    else:
        verdict = "same person" if r["same"] else "different people"
        lines.append(f"decision at {r['_source']} (threshold {r['threshold']:.4f}): {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``facerec verify``; returns the exit status (2 on a user error)."""
    return run_main("verify", _print_verify, build_parser().parse_args(argv))


def _print_verify(args: argparse.Namespace) -> None:
    r = verify(args)
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}))
    else:
        print(format_result(r))


if __name__ == "__main__":
    sys.exit(main())
