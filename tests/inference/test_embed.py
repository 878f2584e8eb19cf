"""The embedding loop and embedders: normalisation, flip test, resizing, order, model loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import facerec.inference as E
from facerec.data.image import fit_to_size
from facerec.errors import DataError, FacerecError
from facerec.eval.embed import score_benchmark


class ChannelStats(nn.Module):
    """(B, 3, H, W) -> (B, 6): per-channel mean, and the mean of the left half minus the right.

    Not mirror-symmetric, so the flip test changes the result; has a dropout to show eval mode.
    """

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[3] // 2
        left_minus_right = x[..., :w].mean((2, 3)) - x[..., w:].mean((2, 3))
        return self.drop(torch.cat([x.mean((2, 3)), left_minus_right], 1))


class ListImages:
    def __init__(self, imgs):
        self.imgs = imgs

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return self.imgs[i]


def reference(imgs: np.ndarray) -> np.ndarray:
    x = (imgs.astype(np.float64) - 127.5) / 127.5
    w = x.shape[2] // 2
    mean = x.mean((1, 2))
    lr = x[:, :, :w].mean((1, 2)) - x[:, :, w:].mean((1, 2))
    return np.concatenate([mean, lr], 1)


def test_torch_embedder_normalises_rgb_and_restores_train_mode():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    net = ChannelStats().train()
    emb = E.TorchEmbedder(net, input_size=(8, 8), batch_size=2)
    out = emb(imgs)
    assert out.dtype == np.float32 and out.shape == (5, 6)
    np.testing.assert_allclose(out, reference(imgs), atol=1e-5)  # no dropout: eval mode
    assert net.training and net.drop.training  # restored
    bgr = E.TorchEmbedder(net, input_size=(8, 8), channel_order="BGR", mean=[0, 0, 0], std=1)
    np.testing.assert_allclose(bgr(imgs)[:, :3], imgs[..., ::-1].mean((1, 2)), rtol=1e-5)


def test_embed_images_flip_resize_and_order():
    rng = np.random.default_rng(1)
    # images of mixed sizes; the loader brings each to the input size
    imgs = [
        rng.integers(0, 256, (8 + i % 3 * 4, 10 + i % 2 * 6, 3), dtype=np.uint8) for i in range(11)
    ]
    emb = E.TorchEmbedder(ChannelStats(), input_size=(8, 8), resize_mode="center_crop")
    fitted = np.stack([fit_to_size(im, (8, 8), "center_crop") for im in imgs])
    stats: list[E.EmbedStats] = []
    out = E.embed_images(emb, ListImages(imgs), batch_size=3, flip=True, stats=stats)
    expected = reference(fitted) + reference(fitted[:, :, ::-1])
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(out[:, 3:], 0, atol=1e-5)  # left-right difference cancels
    no_flip = E.embed_images(emb, ListImages(imgs), batch_size=4, flip=False)
    np.testing.assert_allclose(no_flip, reference(fitted), atol=1e-5)
    assert stats[0].num_images == 11 and stats[0].dim == 6 and stats[0].images_per_second > 0


def test_embed_images_stops_at_or_skips_bad_images():
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(7)]

    class WithBad(ListImages):
        def __getitem__(self, i):
            if i in (2, 5):
                raise DataError(f"image {i}: not a decodable image")
            return super().__getitem__(i)

    emb = E.TorchEmbedder(ChannelStats(), input_size=(8, 8))
    with pytest.raises(DataError, match="image 2: not a decodable image"):
        E.embed_images(emb, WithBad(imgs), batch_size=3)
    skipped: list[tuple[int, str]] = []
    out = E.embed_images(emb, WithBad(imgs), batch_size=3, flip=False, skipped=skipped)
    assert [i for i, _ in skipped] == [2, 5] and "not a decodable" in skipped[0][1]
    kept = np.stack([imgs[i] for i in (0, 1, 3, 4, 6)])
    np.testing.assert_allclose(out, reference(kept), atol=1e-5)
    unit = E.embed_images(emb, WithBad(imgs), batch_size=3, skipped=[], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)


def test_score_benchmark_embeds_each_used_image_once():
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    calls = []

    class Counting(ListImages):
        def __getitem__(self, i):
            calls.append(i)
            return super().__getitem__(i)

    emb = E.TorchEmbedder(ChannelStats(), input_size=(8, 8))
    pairs = np.array([[0, 1], [1, 4], [4, 0]])  # images 2, 3, 5 unused
    s = score_benchmark(emb, Counting(imgs), pairs, batch_size=2, flip=False)
    assert sorted(calls) == [0, 1, 4]
    e = reference(np.stack(imgs))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    np.testing.assert_allclose(s, [e[0] @ e[1], e[1] @ e[4], e[4] @ e[0]], atol=1e-5)


def test_load_checkpoint_embedder_errors(tmp_path):
    with pytest.raises(DataError, match="checkpoint not found"):
        E.load_checkpoint_embedder(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="not a PyTorch checkpoint"):
        E.load_checkpoint_embedder(bad)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(DataError, match="not a facerec checkpoint"):
        E.load_checkpoint_embedder(other)


def test_onnx_embedder_errors(tmp_path):
    model = tmp_path / "m.onnx"
    with pytest.raises(DataError, match="ONNX model not found"):
        E.load_onnx_embedder(model)
    pytest.importorskip("onnxruntime")
    model.write_bytes(b"onnx")
    with pytest.raises(DataError, match="onnxruntime cannot load it"):
        E.load_onnx_embedder(model)


def test_resolve_device():
    assert E.resolve_device("cpu") == "cpu"
    assert E.resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(FacerecError, match="not known"):
        E.resolve_device("tpu:9")
