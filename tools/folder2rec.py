"""Pack an image folder (root/<identity>/<image>) into insightface RecordIO, without MXNet.

Writes OUT/train.rec, OUT/train.idx and OUT/property in the insightface face layout (record 0
header, images as keys 1..N labelled with the identity index, then one key-range record per
identity), readable by ``facerec.data.recordio.RecordIODataset`` and by MXNet/insightface.

Identities are the sorted sub-folder names (label 0, 1, ...); images are sorted by name.

Image bytes (``--format auto``, the default): JPEG and PNG files are stored byte for byte, any
other format (BMP, PGM, WebP, TIFF, ...) is re-encoded as JPEG at ``--quality`` (95). With
``--size`` every image not already that size is resized (aspect ratio not kept) and re-encoded
as JPEG. ``--format jpg`` or ``png`` re-encodes every image in that format. Every image is
decoded once, so a corrupt file stops the pack with its path.

    python tools/folder2rec.py --root faces/ --out data/faces_rec --size 112
"""

from __future__ import annotations

import argparse
import sys

from facerec.data.recordio import pack_folder
from facerec.errors import FacerecError


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, pack, print a one-line summary; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Pack root/<identity>/<image> into insightface train.rec/train.idx/property.",
    )
    parser.add_argument("--root", required=True, help="image folder, one sub-folder per identity")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar="N",
        help="resize to N×N (or give H W); default: keep each image's size",
    )
    parser.add_argument(
        "--format",
        choices=("auto", "jpg", "png"),
        default="auto",
        help="auto: keep JPEG/PNG bytes, re-encode others as JPEG; jpg/png: re-encode all",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality, 1-100 (95)")
    parser.add_argument("--workers", type=int, default=4, help="reader/encoder threads (4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    size: int | tuple[int, int] | None = None
    if args.size is not None:
        if len(args.size) > 2:
            parser.error("--size takes N or H W")
        size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="img", desc="packing", file=sys.stderr)
    try:
        summary = pack_folder(
            args.root,
            args.out,
            size=size,
            image_format=args.format,
            quality=args.quality,
            num_workers=args.workers,
            progress=bar.update if bar is not None else None,
        )
    except FacerecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
