"""The preprocessing record: checkpoint entry and ONNX metadata round trips, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.errors import DataError
from facerec.inference import OnnxMetadata, Preprocess
from facerec.models import IResNet


def test_checkpoint_entry_round_trip_and_defaults():
    pre = Preprocess(input_size=(64, 48), channel_order="bgr", mean=[1, 2, 3], std=2.0)
    assert pre.channel_order == "BGR" and pre.std == (2.0, 2.0, 2.0)
    entry = pre.to_dict()
    assert entry["input_size"] == [64, 48] and entry["mean"] == [1.0, 2.0, 3.0]
    assert Preprocess.from_dict(entry) == pre
    # an entry written before resize_mode was stored keeps the default
    old = {k: v for k, v in entry.items() if k != "resize_mode"}
    assert Preprocess.from_dict(old).resize_mode == "resize"
    assert Preprocess.coerce(pre) is pre and Preprocess.coerce(entry) == pre


def test_bad_entries_are_refused_with_one_line():
    with pytest.raises(DataError, match="unknown preprocess key.*colour"):
        Preprocess.from_dict({"input_size": [112, 112], "colour": "RGB"}, "m.ckpt")
    with pytest.raises(DataError, match="channel_order 'YUV'"):
        Preprocess.from_dict({"channel_order": "YUV"})
    with pytest.raises(DataError, match="expected a dict"):
        Preprocess.coerce([112, 112])  # type: ignore[arg-type]


def test_for_backbone_and_normalize():
    net = IResNet(18, width=0.125, embedding_dim=16, input_size=(32, 32))
    pre = Preprocess.for_backbone(net)
    assert pre.input_size == (32, 32) and pre.embedding_dim == 16
    imgs = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    x = pre.normalize(imgs)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x, (imgs.transpose(0, 3, 1, 2) - 127.5) / 127.5, rtol=1e-6)
    bgr = Preprocess(channel_order="BGR", mean=0, std=1).normalize(imgs)
    np.testing.assert_array_equal(bgr[:, 0], imgs[..., 2])


def test_onnx_metadata_round_trip():
    pre = Preprocess(input_size=(64, 64), mean=(120, 121, 122), embedding_dim=32)
    meta = OnnxMetadata.for_export(pre, bake_normalization=True, l2_normalize=True, version="x")
    props = meta.to_props()
    assert props["input_size"] == "[64, 64]" and props["normalized_output"] == "true"
    back = OnnxMetadata.from_props(props)
    assert back.from_facerec and back.mean == (120.0, 121.0, 122.0)
    assert (back.layout, back.input_dtype, back.normalization_in_graph) == ("NHWC", "uint8", True)
    with pytest.raises(DataError, match="unreadable facerec metadata"):
        OnnxMetadata.from_props({"input_size": "[64"}, source="m.onnx")
