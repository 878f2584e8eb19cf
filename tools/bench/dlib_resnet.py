"""dlib's face ResNet (facerec.models.DlibResNet): speed against dlib, ORL accuracy against pixels.

Speed: embeddings per second of the same 150×150 chips through PyTorch (eager), onnxruntime
(the model exported by ``facerec.export.onnx.export_onnx``) and dlib's own
``face_recognition_model_v1.compute_face_descriptor`` (a list of chips: dlib batches them by 16),
each with 1 and 2 threads (a fresh process per runtime and thread count, with OMP/OpenBLAS/MKL
threads set before anything loads). Batch 1 and batch 32 for PyTorch and ONNX; dlib as it is called.

Accuracy: ORL (40 people × 10 photos, ../shared/data/orl_faces), every genuine pair (1800) and
as many seeded impostor pairs, shuffled, 10-fold verification accuracy (facerec.metrics'
kfold_accuracy: each fold's threshold chosen on the other nine) of the cosine of

* this model's embeddings of centre-crop chips (the photo's middle 92×92, resized to 150),
* this model's embeddings of dlib-aligned chips (dlib's HOG detector and 5-point landmarks,
  ``get_face_chip(…, 150, 0.25)``; the centre crop where no face is found),
* raw pixels (the centre-crop chip, grey, mean-subtracted),
* with ``--checkpoint CKPT`` (e.g. the quick-start model), that facerec checkpoint's embeddings
  of both chips, each brought to its input size by its own resize mode (``fit_to_size``).

    python tools/bench/dlib_resnet.py                 # everything (a few minutes on 2 cores)
    python tools/bench/dlib_resnet.py --quick         # smoke run: 4 people, few timings
    python tools/bench/dlib_resnet.py --accuracy-only --checkpoint /tmp/qs/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ORL = Path(__file__).resolve().parents[3] / "shared" / "data" / "orl_faces"


def centre_chips(paths: list[Path]) -> np.ndarray:
    import cv2

    out = []
    for p in paths:
        g = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        g = cv2.resize(g[10:102], (150, 150), interpolation=cv2.INTER_LINEAR)
        out.append(np.repeat(g[..., None], 3, axis=2))
    return np.ascontiguousarray(np.stack(out))


def dlib_chips(paths: list[Path], fallback: np.ndarray) -> tuple[np.ndarray, int]:
    """dlib-aligned chips; ``fallback[i]`` where dlib's detector finds no face."""
    import cv2
    import dlib

    from facerec.models.dlib_resnet import find_dat

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        str(find_dat().parent / "shape_predictor_5_face_landmarks.dat")
    )
    out, found = fallback.copy(), 0
    for i, p in enumerate(paths):
        rgb = np.ascontiguousarray(
            np.repeat(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[..., None], 3, 2)
        )
        dets = detector(rgb, 2)
        if len(dets):
            shape = predictor(rgb, max(dets, key=lambda r: r.area()))
            out[i] = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            found += 1
    return out, found


def embed_torch(model, chips: np.ndarray, batch: int = 32) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(chips), batch):
            x = torch.from_numpy(chips[i : i + batch]).permute(0, 3, 1, 2).float()
            outs.append(model((x - 127.5) / 127.5).numpy())
    return np.concatenate(outs)


def kfold(emb: np.ndarray, pairs: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    from facerec.metrics.verification import kfold_accuracy

    e = emb.reshape(len(emb), -1).astype(np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    scores = (e[pairs[:, 0]] * e[pairs[:, 1]]).sum(1)
    r = kfold_accuracy(scores, same, 10)
    return r.accuracy_mean, r.accuracy_std


def orl_pairs(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(labels)
    i, j = np.triu_indices(n, 1)
    gen = np.flatnonzero(labels[i] == labels[j])
    imp = rng.choice(np.flatnonzero(labels[i] != labels[j]), size=len(gen), replace=False)
    idx = np.concatenate([gen, imp])
    same = np.concatenate([np.ones(len(gen), bool), np.zeros(len(imp), bool)])
    order = rng.permutation(len(idx))
    return np.stack([i[idx], j[idx]], 1)[order], same[order]


def embed_checkpoint(path: str, chips: np.ndarray) -> np.ndarray:
    """A facerec checkpoint's embeddings of (N, H, W, 3) uint8 chips, each fitted to its input
    size by its own resize mode."""
    from facerec.data.image import fit_to_size
    from facerec.inference import load_checkpoint_embedder

    emb = load_checkpoint_embedder(path)
    size = tuple(emb.input_size)
    return emb(np.stack([fit_to_size(c, size, emb.resize_mode) for c in chips]))


def accuracy(people: int, checkpoint: str | None = None) -> dict:
    from facerec.models.dlib_resnet import load_dlib_resnet

    paths = [ORL / f"s{s}" / f"{k}.pgm" for s in range(1, people + 1) for k in range(1, 11)]
    labels = np.repeat(np.arange(people), 10)
    pairs, same = orl_pairs(labels)
    model = load_dlib_resnet()
    centre = centre_chips(paths)
    t = time.perf_counter()
    aligned, found = dlib_chips(paths, centre)
    t_align = time.perf_counter() - t
    grey = centre[..., 0].astype(np.float64)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    res = {
        "images": len(paths),
        "pairs": len(pairs),
        "genuine": int(same.sum()),
        "dlib_faces_found": found,
        "dlib_align_seconds": round(t_align, 1),
    }
    runs = [
        ("dlib-r29 centre crop", embed_torch(model, centre)),
        ("dlib-r29 dlib-aligned", embed_torch(model, aligned)),
        ("raw pixels", grey),
    ]
    if checkpoint:
        runs += [
            (f"{checkpoint} centre crop", embed_checkpoint(checkpoint, centre)),
            (f"{checkpoint} dlib-aligned", embed_checkpoint(checkpoint, aligned)),
        ]
    for name, emb in runs:
        m, s = kfold(emb, pairs, same)
        res[name] = {"acc": round(100 * m, 2), "std": round(100 * s, 2)}
    return res


def speed(runtime: str, threads: int, n: int, seconds: float) -> dict:
    """Embeddings/s of one runtime in this process (a fresh one per runtime and thread count:
    an onnxruntime or torch.export left in the same process slowed 2-thread PyTorch 40x here)."""
    import torch

    from facerec.models.dlib_resnet import find_dat, load_dlib_resnet

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)
    model = load_dlib_resnet()
    x = (torch.from_numpy(chips).permute(0, 3, 1, 2).float() - 127.5) / 127.5

    def rate(fn, items: int) -> float:
        fn()
        count, t0 = 0, time.perf_counter()
        while True:
            fn()
            count += items
            if time.perf_counter() - t0 >= seconds:
                return count / (time.perf_counter() - t0)

    out = {}
    if runtime == "torch":
        with torch.no_grad():
            for b in (1, 32):
                out[f"torch b{b}"] = rate(lambda xb=x[:b]: model(xb), b)
    elif runtime == "onnx":
        import onnxruntime as ort

        from facerec.export.onnx import export_onnx

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        data = export_onnx(model, model.preprocess())
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for b in (1, 32):
            xn = x[:b].numpy()
            out[f"onnx b{b}"] = rate(lambda xn=xn: sess.run(None, {name: xn}), b)
    else:
        import dlib

        ref = dlib.face_recognition_model_v1(str(find_dat()))
        chip_list = list(chips)
        out["dlib b1"] = rate(lambda: ref.compute_face_descriptor(chip_list[0]), 1)
        out["dlib list32"] = rate(lambda: ref.compute_face_descriptor(chip_list[:32]), 32)
    return {k: round(v, 1) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=5.0, help="timing window per measurement")
    ap.add_argument("--speed-only", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--runtime", default="torch", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--checkpoint", help="also a facerec checkpoint on the ORL pairs")
    ap.add_argument("--accuracy-only", action="store_true", help="no timings")
    a = ap.parse_args(argv)
    seconds = 0.5 if a.quick else a.seconds
    if a.speed_only:
        print(json.dumps(speed(a.runtime, a.speed_only, 32, seconds)))
        return 0
    results: dict = {"cpu": os.cpu_count(), "load_before": os.getloadavg()}
    for t in [] if a.accuracy_only else a.threads:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(t)
        results[f"speed_{t}_threads"] = {}
        for runtime in ("torch", "onnx", "dlib"):
            cmd = [sys.executable, __file__, "--speed-only", str(t), "--runtime", runtime]
            cmd += ["--seconds", str(seconds)]
            run = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            results[f"speed_{t}_threads"].update(json.loads(run.stdout.strip().splitlines()[-1]))
        print(f"{t} thread(s), embeddings/s:", results[f"speed_{t}_threads"], flush=True)
    if ORL.is_dir():
        results["orl"] = accuracy(4 if a.quick else 40, a.checkpoint)
        print("ORL 10-fold:", json.dumps(results["orl"]), flush=True)
    else:
        print(f"{ORL} is absent: no accuracy", flush=True)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
