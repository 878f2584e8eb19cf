"""Benchmark: which face does each ``--keep`` rule choose in real multi-face photos?

On 426 raw LFW photos the old default (``--keep largest``) chose the wrong person in 11 of the 54
with several faces (issue 21 §5): people in the foreground, cut by the frame edge, whose detector
box reached far outside the photo. LFW cannot ship here, so this builds such photos from real
faces: composites of the ORL faces (../shared/data/orl_faces, 40 people, 92x112 grey), made
deterministically from a seed by :func:`make_scenes` (a test builds a few the same way).

Each scene is a frame with a coloured, cluttered background, one **subject** (an ORL photo
scaled) and 1-3 **distractors** (other people, never over the subject's face), in one of five
layouts, cycled:

- ``cut``: 250x250 (LFW's size), the subject (0.75-1.25x) at most 20 px off the centre (LFW's
  photos are centred on their subject); one distractor much larger (1.5-2.5x the subject) cut
  by the frame edge (10-45% of it outside, and at most 45% of the frame covered), the LFW
  failure; the others smaller (0.45-0.8x).
- ``big_inside``: 400x300, the subject as in ``cut``; one larger distractor (1.2-1.6x) wholly
  inside the frame, off-centre; the others smaller.
- ``small``: 250x250, the subject as in ``cut``; every distractor smaller (0.45-0.8x),
  anywhere, possibly cut.
- ``mixed``: 250x250, the subject as in ``cut``; distractors 0.5-2.0x, anywhere, possibly cut.
- ``portrait``: 400x300, the subject larger (1.1-1.6x) and off the centre by 20-30% of the
  width (a portrait by the rule of thirds); distractors 0.4-0.65x of it, anywhere.

Each face is blended in through a soft ellipse. MTCNN (facenet-pytorch 2.5.3, CPU) runs once per
scene; every rule of :data:`facerec.align.pipeline.FACE_RULES` then chooses among the same
detections. A choice is right when its box centre lies inside the subject's pasted rectangle.
Prints, per layout and overall, over the scenes where MTCNN found the subject and another face:
how often each rule chose the subject.

    python tools/bench/align_choice.py                 # 200 scenes, seed 0
    python tools/bench/align_choice.py --scenes 400 --seed 1 --write scenes/

Scenes are a function of (seed, index) alone: seed 0 chose between candidate rules, seed 1 is
the held-out check whose numbers the ``framed`` rule's docstring quotes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ORL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "orl_faces"
LAYOUTS = ("cut", "big_inside", "small", "mixed", "portrait")


@dataclass(frozen=True)
class Scene:
    """One composite photo: ``image`` RGB uint8, the subject's pasted rectangle
    (x1, y1, x2, y2), its layout and the distractors' rectangles (may reach outside)."""

    image: np.ndarray
    subject: tuple[int, int, int, int]
    layout: str
    distractors: tuple[tuple[int, int, int, int], ...]


def _orl(root: Path, person: int, k: int) -> np.ndarray:
    from facerec.data.image import read_image

    return read_image(root / f"s{person}" / f"{k}.pgm")


def _paste(img: np.ndarray, face: np.ndarray, x: int, y: int) -> None:
    """Blend ``face`` into ``img`` at (x, y) (may reach outside) through a soft ellipse."""
    fh, fw = face.shape[:2]
    mask = np.zeros((fh, fw), np.float32)
    cv2.ellipse(mask, (fw // 2, fh // 2), (int(fw * 0.46), int(fh * 0.48)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, fw / 30))[..., None]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + fw, img.shape[1]), min(y + fh, img.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    f = face[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    region = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.round(m * f + (1 - m) * region).astype(np.uint8)


def _overlaps(a, b, gap: int = 4) -> bool:
    return not (
        a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
    )


def make_scene(root: Path, index: int, seed: int = 0) -> Scene:
    """Scene ``index`` of the set ``seed`` (the same pixels every time)."""
    rng = np.random.default_rng([seed, index])
    layout = LAYOUTS[index % len(LAYOUTS)]
    width, height = (400, 300) if layout in ("big_inside", "portrait") else (250, 250)
    img = np.empty((height, width, 3), np.uint8)
    top, bottom = rng.integers(20, 236, 3), rng.integers(20, 236, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    img[:] = np.round(top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    for _ in range(int(rng.integers(3, 8))):  # clutter
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = rng.integers(0, 256, 3).tolist()
        if rng.random() < 0.5:
            cv2.circle(img, c, int(rng.integers(5, 35)), colour, -1)
        else:
            d = rng.integers(10, 60, 2)
            cv2.rectangle(img, c, (c[0] + int(d[0]), c[1] + int(d[1])), colour, -1)
    people = rng.permutation(np.arange(1, 41))
    s = rng.uniform(1.1, 1.6) if layout == "portrait" else rng.uniform(0.75, 1.25)
    face = cv2.resize(_orl(root, int(people[0]), int(rng.integers(1, 11))), None, fx=s, fy=s)
    fh, fw = face.shape[:2]
    if layout == "portrait":  # the subject off-centre, by a third of the frame
        cx = width / 2 + rng.choice([-1, 1]) * rng.uniform(0.2, 0.3) * width
        cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    else:
        cx, cy = width / 2 + rng.uniform(-20, 20), height / 2 + rng.uniform(-20, 20)
    sx, sy = round(cx - fw / 2), round(cy - fh / 2)
    subject = (sx, sy, sx + fw, sy + fh)
    # the subject's face proper (its photo's hair and background margins left out): a large
    # foreground distractor may reach behind the margins; the subject is pasted last, in front
    mx, my = fw // 5, fh // 5
    inner = (sx + mx, sy + my, sx + fw - mx, sy + fh - my)
    placed: list[tuple[int, int, int, int]] = []
    n = int(rng.integers(1, 4))
    for j in range(n):
        first = j == 0
        if layout == "cut" and first:
            scale, cut = s * rng.uniform(1.5, 2.5), rng.uniform(0.1, 0.45)
        elif layout == "big_inside" and first:
            scale, cut = s * rng.uniform(1.2, 1.6), 0.0
        elif layout == "portrait":
            scale, cut = s * rng.uniform(0.4, 0.65), None
        elif layout in ("small", "cut", "big_inside"):
            scale, cut = s * rng.uniform(0.45, 0.8), None
        else:
            scale, cut = s * rng.uniform(0.5, 2.0), None
        d = _orl(root, int(people[1 + j]), int(rng.integers(1, 11)))
        d = cv2.resize(d, None, fx=scale, fy=scale)
        dh, dw = d.shape[:2]
        for _ in range(200):
            if cut:  # a given share of the face outside, across one edge
                edge = int(rng.integers(0, 4))
                # at most 45% of the frame's side covered by the visible part
                out_x = round(dw * max(cut, 1 - 0.45 * width / dw))
                out_y = round(dh * max(cut, 1 - 0.45 * height / dh))
                if edge == 0:
                    x, y = -out_x, int(rng.integers(-dh // 4, height - 3 * dh // 4))
                elif edge == 1:
                    x, y = width - dw + out_x, int(rng.integers(-dh // 4, height - 3 * dh // 4))
                elif edge == 2:
                    x, y = int(rng.integers(-dw // 4, width - 3 * dw // 4)), -out_y
                else:
                    x, y = int(rng.integers(-dw // 4, width - 3 * dw // 4)), height - dh + out_y
            elif cut == 0.0:  # wholly inside
                if dw >= width or dh >= height:
                    break
                x, y = (int(v) for v in rng.integers(0, [width - dw + 1, height - dh + 1]))
            else:  # anywhere, at least 60% of each side inside
                x = int(rng.integers(-int(dw * 0.4), width - int(dw * 0.6) + 1))
                y = int(rng.integers(-int(dh * 0.4), height - int(dh * 0.6) + 1))
            rect = (x, y, x + dw, y + dh)
            own = inner if layout == "cut" and first else subject
            if not any(_overlaps(rect, r) for r in (own, *placed)):
                _paste(img, d, x, y)
                placed.append(rect)
                break
    _paste(img, face, sx, sy)
    return Scene(img, subject, layout, tuple(placed))


def make_scenes(root: Path, n: int, seed: int = 0) -> list[Scene]:
    """Scenes 0..n-1 of the set ``seed``."""
    return [make_scene(root, i, seed) for i in range(n)]


def subject_index(boxes: np.ndarray, subject) -> int | None:
    """The detection whose box centre lies inside the subject's rectangle (the most central
    one if several), or None when the detector missed the subject."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    x1, y1, x2, y2 = subject
    inside = np.flatnonzero((cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2))
    if inside.size == 0:
        return None
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    return int(inside[np.argmin((cx[inside] - mx) ** 2 + (cy[inside] - my) ** 2)])


def evaluate(scenes: list[Scene], detector, min_face: int = 20) -> dict:
    """Per layout (and ``all``) and rule: [right, judged]; plus scene counts."""
    from facerec.align.pipeline import FACE_RULES, choose_faces, detect_images

    table = {lay: {r: [0, 0] for r in FACE_RULES} for lay in (*LAYOUTS, "all")}
    counts = {"scenes": len(scenes), "several": 0, "subject_missed": 0}
    dets = detect_images(detector, [s.image for s in scenes])
    for scene, det in zip(scenes, dets, strict=True):
        keep = np.flatnonzero(
            np.minimum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
            >= min_face
        )
        if keep.size < 2:
            continue
        counts["several"] += 1
        truth = subject_index(det.boxes[keep], scene.subject)
        if truth is None:
            counts["subject_missed"] += 1
            continue
        for rule in FACE_RULES:
            chosen = choose_faces(det, scene.image.shape, rule, min_face).kept.boxes
            right = subject_index(chosen, scene.subject) is not None
            for lay in (scene.layout, "all"):
                table[lay][rule][0] += int(right)
                table[lay][rule][1] += 1
    return {"table": table, **counts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--orl", type=Path, default=ORL, help="the ORL faces folder (s1..s40)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--write", type=Path, help="also write the scenes as PNGs here")
    args = p.parse_args(argv)
    if not (args.orl / "s1" / "1.pgm").is_file():
        print(f"the ORL faces are not at {args.orl}; pass --orl", file=sys.stderr)
        return 2
    from facerec.align.detect import MTCNNDetector
    from facerec.align.pipeline import FACE_RULES

    t0 = time.perf_counter()
    scenes = make_scenes(args.orl, args.scenes, args.seed)
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(scenes):
            cv2.imwrite(str(args.write / f"{i:04d}_{s.layout}.png"), s.image[..., ::-1])
    res = evaluate(scenes, MTCNNDetector(device=args.device))
    took = time.perf_counter() - t0
    print(
        f"{res['scenes']} scenes (seed {args.seed}), {res['several']} with several faces found, "
        f"{res['subject_missed']} of them without the subject found; {took:.0f} s"
    )
    print("| layout | judged | " + " | ".join(FACE_RULES) + " |")
    print("|---|---:|" + "---:|" * len(FACE_RULES))
    for lay, row in res["table"].items():
        n = row[FACE_RULES[0]][1]
        cells = [f"{100 * r / n:.1f}% ({r})" if n else "-" for r, _ in row.values()]
        print(f"| {lay} | {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
