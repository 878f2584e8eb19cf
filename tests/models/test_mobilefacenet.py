"""MobileFaceNet: insightface's layout and state dicts, size, FLOPs, bf16, channels_last, ONNX."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from facerec.errors import ConfigError
from facerec.models import MobileFaceNet, mbf, mbf_large

# ---------------------------------------------------------------------------------------------
# A re-creation of insightface arcface_torch backbones/mobilefacenet.py (same module tree, so the
# same state-dict key names and shapes), written here independently of facerec's class: the
# reference the loader is checked against.


class _RefConvBlock(nn.Module):
    def __init__(self, i, o, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(i, o, kernel, groups=groups, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(num_features=o),
            nn.PReLU(num_parameters=o),
        )

    def forward(self, x):
        return self.layers(x)


class _RefLinearBlock(nn.Module):
    def __init__(self, i, o, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(i, o, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(num_features=o),
        )

    def forward(self, x):
        return self.layers(x)


class _RefDepthWise(nn.Module):
    def __init__(self, i, o, residual=False, kernel=(3, 3), stride=(2, 2), padding=(1, 1), g=1):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            _RefConvBlock(i, g),
            _RefConvBlock(g, g, groups=g, kernel=kernel, padding=padding, stride=stride),
            _RefLinearBlock(g, o),
        )

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


class _RefResidual(nn.Module):
    def __init__(self, c, num_block, groups):
        super().__init__()
        self.layers = nn.Sequential(
            *[_RefDepthWise(c, c, True, (3, 3), (1, 1), (1, 1), groups) for _ in range(num_block)]
        )

    def forward(self, x):
        return self.layers(x)


class _RefFlatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class _RefGDC(nn.Module):
    def __init__(self, embedding_size, kernel=(7, 7)):
        super().__init__()
        self.layers = nn.Sequential(
            _RefLinearBlock(512, 512, groups=512, kernel=kernel),
            _RefFlatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x):
        return self.layers(x)


class _RefMobileFaceNet(nn.Module):
    def __init__(self, num_features=512, blocks=(1, 4, 6, 2), scale=2, kernel=(7, 7)):
        super().__init__()
        s = scale
        self.layers = nn.ModuleList([_RefConvBlock(3, 64 * s, (3, 3), (2, 2), (1, 1))])
        if blocks[0] == 1:
            self.layers.append(_RefConvBlock(64 * s, 64 * s, (3, 3), (1, 1), (1, 1), groups=64))
        else:
            self.layers.append(_RefResidual(64 * s, blocks[0], 128))
        self.layers.extend(
            [
                _RefDepthWise(64 * s, 64 * s, g=128),
                _RefResidual(64 * s, blocks[1], 128),
                _RefDepthWise(64 * s, 128 * s, g=256),
                _RefResidual(128 * s, blocks[2], 256),
                _RefDepthWise(128 * s, 128 * s, g=512),
                _RefResidual(128 * s, blocks[3], 256),
            ]
        )
        self.conv_sep = _RefConvBlock(128 * s, 512)
        self.features = _RefGDC(num_features, kernel)

    def forward(self, x):
        for f in self.layers:
            x = f(x)
        return self.features(self.conv_sep(x))


def _randomize(net: nn.Module, seed: int = 0) -> None:
    """Random weights and BatchNorm statistics, as a trained network has."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)


# ---------------------------------------------------------------------------------------------


def test_insightface_mbf_state_dict_loads_strictly_and_gives_the_same_embeddings() -> None:
    ref = _RefMobileFaceNet(num_features=128, kernel=(4, 4))
    _randomize(ref)
    state = ref.state_dict()
    assert "features.layers.0.layers.0.weight" in state and "conv_sep.layers.2.weight" in state
    net = MobileFaceNet(embedding_dim=128, input_size=(64, 64))
    assert len(net.state_dict()) == len(state)
    net.load_insightface_state_dict(state)
    x = torch.randn(3, 3, 64, 64)
    torch.testing.assert_close(net.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_insightface_mbf_large_layout_loads_strictly() -> None:
    ref = _RefMobileFaceNet(num_features=64, blocks=(2, 8, 12, 4), scale=4, kernel=(2, 2))
    _randomize(ref, seed=1)
    net = mbf_large(embedding_dim=64, input_size=(32, 32))
    net.load_insightface_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_loader_refuses_another_layout() -> None:
    ref = _RefMobileFaceNet(num_features=128, kernel=(4, 4))
    net = MobileFaceNet(embedding_dim=64, input_size=(64, 64))  # other embedding size
    with pytest.raises(RuntimeError, match="size mismatch"):
        net.load_insightface_state_dict(ref.state_dict())


def test_published_sizes_and_flops() -> None:
    small = mbf()
    assert abs(sum(p.numel() for p in small.parameters()) - 2.06e6) < 0.005e6
    large = mbf_large()
    assert abs(sum(p.numel() for p in large.parameters()) - 6.31e6) < 0.01e6
    with FlopCounterMode(display=False) as counter:
        small.eval()(torch.randn(1, 3, 112, 112))
    macs = counter.get_total_flops() / 2  # the counter counts a multiply-add as 2 FLOPs
    # insightface's table: 0.45 GFLOPs (multiply-adds, convolutions and the Linear)
    assert 0.43e9 < macs < 0.46e9, macs
    assert small.head.layers[0].layers[0].kernel_size == (7, 7)


def test_bf16_and_channels_last_match_float32() -> None:
    torch.manual_seed(0)
    net = MobileFaceNet(embedding_dim=64, input_size=(32, 32)).eval()
    _randomize(net)
    x = torch.randn(2, 3, 32, 32)
    ref = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
    assert low.dtype == torch.bfloat16
    cos = nn.functional.cosine_similarity(low.float(), ref).min()
    assert cos > 0.99, cos
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_trains_one_step_in_train_mode() -> None:
    net = MobileFaceNet(embedding_dim=32, input_size=(32, 32))
    out = net(torch.randn(4, 3, 32, 32))
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bad_configuration_and_input_are_clear() -> None:
    with pytest.raises(ConfigError, match="blocks"):
        MobileFaceNet(blocks=(1, 4, 6))
    with pytest.raises(ConfigError, match="scale"):
        MobileFaceNet(scale=0)
    net = MobileFaceNet(embedding_dim=32, input_size=(32, 32))
    with pytest.raises(ConfigError, match=r"expected \(B, 3, 32, 32\)"):
        net(torch.randn(1, 3, 64, 64))


def test_onnx_export_round_trip_passes_the_self_check() -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from facerec.export.check import check_onnx
    from facerec.export.onnx import export_onnx
    from facerec.inference import Preprocess

    torch.manual_seed(0)
    net = MobileFaceNet(embedding_dim=64, input_size=(32, 32)).eval()
    _randomize(net)
    pre = Preprocess.for_backbone(net)
    data = export_onnx(net, pre, exporter="torchscript")
    results = check_onnx(data, net, pre, batch_sizes=(1, 3))
    assert results and all(r.ok() for r in results), results
    assert max(r.max_abs_diff for r in results) < 1e-3
