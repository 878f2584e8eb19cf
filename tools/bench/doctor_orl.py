"""The data doctor on real faces with planted problems: dlib-r29 against the quick-start model.

ORL (40 people × 10 photos, ../shared/data/orl_faces) as dlib-aligned 150×150 chips (dlib's HOG
detector and 5-point landmarks, ``get_face_chip(…, 150, 0.25)``, built by
tools/bench/dlib_resnet.py; the centre crop where dlib finds no face), written as PNG to a
temporary folder, then planted (seeded):

* ``--dups`` near duplicates: a photo re-saved as JPEG (quality 85, brightness +8) beside itself;
* ``--exact`` exact duplicates: a byte copy beside itself (found by hash, by any model);
* ``--cross`` cross-identity copies: a photo of person A re-saved as JPEG into person B's folder;
* ``--swaps`` swapped labels: a photo of person A moved into person B's folder.

``facerec doctor``'s analysis (:func:`facerec.eval.doctor_cli.run_doctor`, flip test on) runs
with each model and its thresholds (:func:`facerec.eval.doctor.model_thresholds`), and with
dlib-r29 under the generic defaults, on the planted folder and on the clean one. A planted
problem is found when the doctor drops the planted file (for a near duplicate: the copy or its
original). A false positive is any other dropped photo, except the original of a cross-identity
copy (the doctor drops both sides of a near copy across identities: which label is right cannot
be told).

    .venv/bin/python tools/bench/doctor_orl.py --quickstart /tmp/qs/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from dlib_resnet import ORL, centre_chips, dlib_chips

from facerec.eval.doctor import DoctorOptions, model_thresholds
from facerec.eval.doctor_cli import read_training_images, run_doctor
from facerec.inference import load_checkpoint_embedder


def write_chips(out: Path) -> int:
    """ORL's 400 photos as dlib-aligned PNG chips in ``out/sN/K.png``; returns faces found."""
    paths = [ORL / f"s{s}" / f"{k}.pgm" for s in range(1, 41) for k in range(1, 11)]
    chips, found = dlib_chips(paths, centre_chips(paths))
    for p, chip in zip(paths, chips, strict=True):
        (out / p.parent.name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / p.parent.name / f"{p.stem}.png"), chip)
    return found


def _jpeg(src: Path, dst: Path) -> None:
    img = cv2.imread(str(src))
    img = np.clip(img.astype(np.int16) + 8, 0, 255).astype(np.uint8)
    cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, 85])


def plant(root: Path, dups: int, exact: int, cross: int, swaps: int, seed: int = 0) -> dict:
    """Plant the problems in the chip folder ``root``; returns their file keys (``sN/name``)."""
    rng = np.random.default_rng(seed)
    photos = [f"s{s}/{k}.png" for s in range(1, 41) for k in range(1, 11)]
    picked = rng.choice(len(photos), dups + exact + cross + swaps, replace=False)
    picks = [photos[i] for i in picked]
    out: dict = {"near": [], "exact": [], "cross": [], "swap": []}
    for n, key in enumerate(picks[:dups]):
        copy = key.replace(".png", f"_dup{n}.jpg")
        _jpeg(root / key, root / copy)
        out["near"].append((key, copy))
    for n, key in enumerate(picks[dups : dups + exact]):
        copy = key.replace(".png", f"_copy{n}.png")
        shutil.copyfile(root / key, root / copy)
        out["exact"].append((key, copy))
    for n, key in enumerate(picks[dups + exact : dups + exact + cross]):
        person = int(key.split("/")[0][1:])
        other = 1 + (person + int(rng.integers(0, 39))) % 40
        copy = f"s{other}/cross{n}_from_s{person}.jpg"
        _jpeg(root / key, root / copy)
        out["cross"].append((key, copy))
    for n, key in enumerate(picks[dups + exact + cross :]):
        person = int(key.split("/")[0][1:])
        other = 1 + (person + int(rng.integers(0, 39))) % 40
        moved = f"s{other}/swap{n}_from_s{person}.png"
        (root / key).rename(root / moved)
        out["swap"].append((key, moved))
    return out


def score(dropped: set[str], planted: dict) -> dict:
    """Found and false-positive counts of a drop list against the planted problems."""
    found = {
        "near": sum(a in dropped or b in dropped for a, b in planted["near"]),
        "exact": sum(b in dropped for _, b in planted["exact"]),
        "cross": sum(b in dropped for _, b in planted["cross"]),
        "swap": sum(b in dropped for _, b in planted["swap"]),
    }
    expected = {x for v in planted.values() for pair in v for x in pair}
    found["false_positives"] = len(dropped - expected)
    return found


def run(root: Path, embedder, opt: DoctorOptions, out: Path) -> tuple[set[str], dict]:
    data = read_training_images(root)
    res = run_doctor(data, embedder, out, opt=opt, num_workers=1)
    dropped = {data.keys[i] for i in res.drop}
    s = res.summary
    counts = {k: s[k] for k in ("near_duplicate_pairs", "mislabelled", "split_identity_pairs")}
    return dropped, {**counts, "drop": s["drop"], "images": s["num_images"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quickstart", help="the quick-start checkpoint (facerec fit quickstart.yaml)")
    ap.add_argument("--dups", type=int, default=10)
    ap.add_argument("--exact", type=int, default=5)
    ap.add_argument("--cross", type=int, default=10)
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    if not ORL.is_dir():
        print(f"{ORL} is absent", file=sys.stderr)
        return 1
    models = [("dlib-r29", "dlib-r29", True), ("dlib-r29", "dlib-r29", False)]
    if a.quickstart:
        models.append(("quick-start", a.quickstart, True))
    results: dict = {"cpu": platform.processor() or platform.machine(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        clean, dirty = Path(tmp) / "clean", Path(tmp) / "dirty"
        results["dlib_faces_found"] = write_chips(clean)
        shutil.copytree(clean, dirty)
        planted = plant(dirty, a.dups, a.exact, a.cross, a.swaps)
        for label, model, own in models:
            emb = load_checkpoint_embedder(model)
            values, source = model_thresholds(model, emb.backbone)
            opt = DoctorOptions(**values) if own else DoctorOptions()
            for name, root in (("clean", clean), ("planted", dirty)):
                dropped, counts = run(root, emb, opt, Path(tmp) / "out")
                row = {
                    "model": label,
                    "thresholds": source if own else "the generic defaults",
                    "folder": name,
                    **counts,
                }
                if name == "planted":
                    row.update(score(dropped, planted))
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
    results["planted"] = {k: len(v) for k, v in planted.items()}
    results["load_after"] = os.getloadavg()
    print("\n| model | thresholds | folder | images | dropped | near dups found | exact found | "
          "cross-identity copies found | swaps found | false positives |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    p = results["planted"]
    for r in results["rows"]:
        cells = (
            [
                f"{r['near']}/{p['near']}",
                f"{r['exact']}/{p['exact']}",
                f"{r['cross']}/{p['cross']}",
                f"{r['swap']}/{p['swap']}",
                str(r["false_positives"]),
            ]
            if r["folder"] == "planted"
            else ["", "", "", "", str(r["drop"])]
        )
        print(f"| {r['model']} | {r['thresholds']} | {r['folder']} | {r['images']} | "
              f"{r['drop']} | " + " | ".join(cells) + " |")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
