"""``facerec synth``: write a synthetic data set as an image folder or a contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.data.synthetic.write import write_contact_sheet, write_synthetic_folder
from facerec.errors import FacerecError, run_main
from facerec.io import check_output


def _positive_int(name: str, minimum: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """``facerec synth``: write a synthetic image-folder data set. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="facerec synth",
        description="Write a procedurally generated face data set as an image-folder tree "
        "(OUT/id_00000/0000.png, ...).",
    )
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument(
        "--grid",
        type=Path,
        metavar="IMAGE",
        help="instead of a folder, write one .png/.jpg image (row: identity, column: image)",
    )
    parser.add_argument("--identities", required=True, type=_positive_int("--identities"))
    parser.add_argument(
        "--images-per-identity", required=True, type=_positive_int("--images-per-identity")
    )
    parser.add_argument("--size", default=112, type=_positive_int("--size", 16), help="pixels")
    parser.add_argument("--seed", default=0, type=_positive_int("--seed", 0))
    parser.add_argument("--ext", default=".png", choices=[".png", ".jpg", ".bmp"])
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a synthetic set written to --out before (default: --out must be new or "
        "empty; a folder holding other files is always refused)",
    )
    args = parser.parse_args(argv)
    if (args.out is None) == (args.grid is None):
        parser.error("give exactly one of --out DIR or --grid IMAGE")
    return run_main("synth", _write, args)


def _write(args: argparse.Namespace) -> None:
    faces = (args.identities, args.images_per_identity, args.size, args.seed)
    try:
        if args.grid is not None:
            check_output(args.grid, "--grid")
            sheet = write_contact_sheet(args.grid, *faces)
            print(f"wrote {args.identities}x{args.images_per_identity} contact sheet to {sheet}")
            return
        out = write_synthetic_folder(args.out, *faces, args.ext, overwrite=args.overwrite)
    except OSError as e:
        raise FacerecError(f"cannot write to {args.grid or args.out}: {e.strerror}") from None
    n = args.identities * args.images_per_identity
    print(f"wrote {n} images of {args.identities} identities to {out}")
