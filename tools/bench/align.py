"""Benchmark: face detection + alignment (``facerec align``'s work) on 250x250 photos.

LFW's photos are 250x250 with the face near the centre. This builds such photos from the real
ORL faces (../shared/data/orl_faces, 92x112 grey): each face scaled 1.0-1.4x and pasted at a
random place of a 250x250 frame with a random colour background and clutter. Without ORL it uses
synthetic faces (which MTCNN finds less often; the faces-found column says so).

For each batch size it times, on images already in memory, MTCNN (facenet-pytorch 2.5.3)
detection plus the 5-point warp to 112x112 (:func:`facerec.align.pipeline.detect_images`,
:func:`~facerec.align.pipeline.choose_faces`, the crops), after one warm-up batch, and prints
one markdown row each: device, torch threads, batch, images/s, ms/image, faces found. With
``--folder`` it also times ``facerec align`` end to end (read JPEG, detect, warp, write PNG,
report) on the same photos written to a temporary folder.

    python tools/bench/align.py                       # CPU, 200 photos, batches 1 and 16
    python tools/bench/align.py --device cuda --batch 1 16 64 --images 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ORL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "orl_faces"


def make_photos(n: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """``n`` RGB uint8 250x250 photos with one face each, and where the faces came from."""
    rng = np.random.default_rng(seed)
    if (ORL / "s1" / "1.pgm").is_file():
        from facerec.data.image import read_image

        faces = [read_image(ORL / f"s{p}" / f"{k}.pgm") for p in range(1, 41) for k in range(1, 11)]
        source = "ORL faces"
    else:
        from facerec.data.synthetic import SyntheticFaces

        syn = SyntheticFaces(200, 5, size=112)
        faces = [syn.render(i % 200, i // 200) for i in range(1000)]
        source = "synthetic faces (ORL not found)"
    photos = []
    for i in range(n):
        face = faces[i % len(faces)]
        s = rng.uniform(1.0, 1.4)
        face = cv2.resize(face, (round(face.shape[1] * s), round(face.shape[0] * s)))
        img = np.empty((250, 250, 3), np.uint8)
        img[:] = rng.integers(30, 220, 3)
        for _ in range(4):  # clutter
            x, y = (int(v) for v in rng.integers(0, 250, 2))
            cv2.circle(img, (x, y), int(rng.integers(5, 40)), rng.integers(0, 255, 3).tolist(), -1)
        y = int(rng.integers(0, 250 - face.shape[0] + 1))
        x = int(rng.integers(0, 250 - face.shape[1] + 1))
        img[y : y + face.shape[0], x : x + face.shape[1]] = face
        photos.append(img)
    return photos, source


def time_in_memory(photos: list[np.ndarray], batch: int, device: str) -> dict:
    from facerec.align.detect import MTCNNDetector
    from facerec.align.pipeline import choose_faces, detect_images

    det = MTCNNDetector(device=device, batch_size=batch)

    def run(imgs: list[np.ndarray]) -> int:
        found = 0
        for s in range(0, len(imgs), batch):
            chunk = imgs[s : s + batch]
            for img, d in zip(chunk, detect_images(det, chunk), strict=True):
                choice = choose_faces(d, img.shape, "largest", 20)
                found += len(choice.crops(img)) > 0
        return found

    run(photos[:batch])  # warm-up
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    t = time.perf_counter()
    found = run(photos)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"seconds": dt, "found": found}


def time_folder(photos: list[np.ndarray], batch: int, device: str) -> dict:
    from facerec.align.cli import align_folder

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        for i, img in enumerate(photos):
            d = raw / f"p{i // 10:03d}"
            d.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(d / f"{i:05d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        t = time.perf_counter()
        counts = align_folder(
            raw, Path(tmp) / "out", batch_size=batch, device=device, progress=False
        )
        dt = time.perf_counter() - t
    return {"seconds": dt, "found": counts["ok"] + counts["multiple"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    ap.add_argument("--folder", action="store_true", help="also time facerec align end to end")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    photos, source = make_photos(args.images)
    print(f"{args.images} photos 250x250 from {source}; load average {os.getloadavg()[0]:.2f}")
    print("| what | device | threads | batch | images/s | ms/image | faces found |")
    print("|---|---|---:|---:|---:|---:|---:|")
    runs = [("detect + align (in memory)", time_in_memory, b) for b in args.batch]
    if args.folder:
        runs += [("facerec align (JPEG in, PNG out)", time_folder, b) for b in args.batch[-1:]]
    for what, fn, b in runs:
        r = fn(photos, b, args.device)
        n = len(photos)
        print(
            f"| {what} | {args.device} | {args.threads} | {b} | {n / r['seconds']:.1f} | "
            f"{1000 * r['seconds'] / n:.1f} | {r['found']}/{n} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
