"""``facerec export``: a checkpoint's embedding network to ONNX, checked against PyTorch.

Example::

    facerec export --checkpoint runs/r50/last.ckpt --out r50.onnx
    facerec export --checkpoint runs/r50/last.ckpt --out r50_uint8.onnx --bake-normalization
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from facerec.errors import ConfigError, FacerecError, run_main
from facerec.inference.checkpoint import checkpoint_calibration, load_facerec_checkpoint
from facerec.inference.onnx import read_onnx_metadata
from facerec.io import atomic_write_bytes, check_free_space, check_output, write_failed
from facerec.metrics.calibration import format_calibration

from .check import MIN_COSINE, CheckResult, check_onnx, format_check
from .onnx import DEFAULT_OPSET, MIN_OPSET, Exporter, export_onnx


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    bake_normalization: bool = False,
    l2_normalize: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: Exporter = "dynamo",
    check: bool = True,
    batch_sizes: Sequence[int] = (1, 8),
    min_cosine: float = MIN_COSINE,
    log: Callable[[str], None] = print,
) -> list[CheckResult]:
    """Export ``checkpoint``'s embedding network to ``out`` and check it; the check results.
    DataError for a checkpoint not facerec's; FacerecError (``out`` left as it was) when the
    export fails or the check finds a cosine below ``min_cosine``."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; expected a file name such as model.onnx")
    check_output(out, "--out", [("--checkpoint", checkpoint)])
    loaded = load_facerec_checkpoint(checkpoint)
    weights = sum(t.numel() * 4 for t in loaded.backbone.state_dict().values())  # float32 in ONNX
    check_free_space(out, weights + 2**20, "--out")
    pre = loaded.preprocess
    calibration = checkpoint_calibration(checkpoint)  # carried into the metadata
    h, w = loaded.input_size
    log(
        f"exporting {type(loaded.backbone).__name__} from {loaded.path} "
        f"(input {h}x{w} {pre.channel_order}, {exporter} exporter, opset {opset})"
    )
    doc = f"facerec embedding network exported from {loaded.path.name}"
    data = export_onnx(
        loaded.backbone, pre, bake_normalization, l2_normalize, opset, exporter, doc, calibration
    )
    results: list[CheckResult] = []
    if check:
        results = check_onnx(data, loaded.backbone, pre, batch_sizes)
        log("self-check, onnxruntime against PyTorch eager:")
        log(format_check(results, min_cosine))
        bad = [r for r in results if not r.ok(min_cosine)]
        if bad:
            worst = min(bad, key=lambda r: r.min_cosine)
            raise FacerecError(
                f"self-check failed: ONNX and PyTorch embeddings differ (min cosine "
                f"{worst.min_cosine:.6f} on {worst.name} at batch {worst.batch}; expected >= "
                f"{min_cosine}); {out} was not written"
            )
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise write_failed(out, e) from None
    meta = read_onnx_metadata(out)
    if bake_normalization:
        inp = f"images uint8 (N, {h}, {w}, 3) {meta.channel_order}, normalisation in the graph"
    else:
        inp = (
            f"input float32 (N, 3, {h}, {w}) {meta.channel_order}, "
            f"(x - {meta.mean[0]:g}) / {meta.std[0]:g}"
        )
    norm = "L2-normalised" if meta.normalized_output else "raw"
    log(
        f"wrote {out} ({len(data) / 2**20:.1f} MiB): {inp} -> embedding float32 "
        f"(N, {meta.embedding_dim}) {norm}"
    )
    if calibration is not None:
        log("carried into the metadata (facerec.calibration): " + format_calibration(calibration))
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facerec export",
        description="Export a checkpoint's embedding network (backbone + embedding head) to "
        "ONNX with a dynamic batch axis and the preprocessing in the metadata, then check it "
        "against PyTorch with onnxruntime.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="facerec checkpoint")
    p.add_argument("--out", required=True, metavar="FILE", help="ONNX file to write")
    p.add_argument(
        "--bake-normalization",
        action="store_true",
        help="put the normalisation in the graph: the input becomes uint8 (N, H, W, 3) RGB",
    )
    p.add_argument(
        "--l2-normalize",
        action="store_true",
        help="L2-normalise the output embedding in the graph",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} or newer (default {DEFAULT_OPSET})",
    )
    p.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="PyTorch exporter: dynamo (torch.export, default) or torchscript (legacy)",
    )
    p.add_argument(
        "--check-batch-sizes",
        type=int,
        nargs=2,
        default=[1, 8],
        metavar="N",
        help="the two batch sizes of the self-check (default 1 8)",
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        default=MIN_COSINE,
        help=f"fail when any cosine to PyTorch is below this (default {MIN_COSINE})",
    )
    p.add_argument("--no-check", action="store_true", help="skip the self-check")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``facerec export``; returns the exit status (2 on a user error)."""
    return run_main("export", run, build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> None:
    if min(args.check_batch_sizes) < 1:
        raise ConfigError("--check-batch-sizes must be >= 1")
    export_checkpoint(
        args.checkpoint,
        args.out,
        bake_normalization=args.bake_normalization,
        l2_normalize=args.l2_normalize,
        opset=args.opset,
        exporter=args.exporter,
        check=not args.no_check,
        batch_sizes=args.check_batch_sizes,
        min_cosine=args.min_cosine,
    )


if __name__ == "__main__":
    sys.exit(main())
