"""Recognise published backbone state dicts by their keys, and load them into facerec backbones.

Known layouts: insightface arcface_torch's IResNet, MobileFaceNet and ViT, facerec's own IResNet
and torchvision's ImageNet ResNet (into :class:`TorchvisionResNet`'s trunk; its ``fc`` and a 7×7
stem that does not fit the face stem stay fresh); a ``module.`` prefix is removed. The
architecture is read from keys and shapes, so a mismatch says "this file is X; expected
model.backbone to be X".
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from facerec.errors import ConfigError
from facerec.models.iresnet import LAYERS, IResNet
from facerec.models.mobilefacenet import MobileFaceNet
from facerec.models.torchvision_resnet import TorchvisionResNet
from facerec.models.vit import ViT, insightface_vit_layout

#: (blocks per stage, bottleneck) -> torchvision architecture
_TV_ARCHS = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}


#: kind of a recognised state dict -> the backbone class that takes it
_CLASSES: dict[str, type[nn.Module]] = {
    "insightface_iresnet": IResNet,
    "facerec_iresnet": IResNet,
    "insightface_mbf": MobileFaceNet,
    "insightface_vit": ViT,
    "torchvision_resnet": TorchvisionResNet,
}


@dataclass
class ForeignStateDict:
    """A recognised state dict: ``kind`` (a key of ``_CLASSES``), a readable ``name`` and the
    model.backbone config that takes it (``expected``)."""

    kind: str
    name: str
    expected: str
    state: dict[str, torch.Tensor]


def _stage_blocks(keys: Collection[str], pattern: str, stages: int) -> tuple[int, ...]:
    """Distinct block indices of each stage (``pattern`` has a {s} for the stage)."""
    rxs = [re.compile(pattern.format(s=s)) for s in range(1, stages + 1)]
    return tuple(len({m.group(1) for k in keys if (m := rx.match(k))}) for rx in rxs)


def _iresnet(state: dict[str, torch.Tensor], origin: str, fc: str) -> ForeignStateDict:
    """An IResNet state dict of ``origin`` (insightface or facerec; ``fc`` its embedding layer)."""
    blocks = _stage_blocks(state, r"layer{s}\.(\d+)\.", 4)
    depth = next((d for d, b in LAYERS.items() if tuple(b) == blocks), None)
    width = state["conv1.weight"].shape[0] / 64
    dim = state[fc].shape[0]
    label = f"IResNet-{depth}" if depth else f"IResNet with blocks {list(blocks)}"
    return ForeignStateDict(
        f"{origin}_iresnet",
        f"{origin} {label} (width {width:g}, {dim}-d)",
        f"facerec.models.IResNet with depth: {depth}, width: {width:g}, embedding_dim: {dim}",
        state,
    )


def identify_state_dict(state: dict[str, torch.Tensor]) -> ForeignStateDict | None:
    """Recognise a known state dict layout; None for any other dict (e.g. a Lightning ckpt)."""
    if not state or not all(isinstance(k, str) for k in state):
        return None
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    has = state.__contains__
    if vit := insightface_vit_layout(state):
        return ForeignStateDict("insightface_vit", *vit, state)
    if has("conv_sep.layers.0.weight") and has("features.layers.2.weight"):
        scale = state["layers.0.layers.0.weight"].shape[0] // 64
        # layers.1 is one ConvBlock when blocks[0] == 1, else a Residual of blocks[0] blocks
        counts = _stage_blocks(state, r"layers\.{s}\.layers\.(\d+)\.layers\.0\.layers", 7)
        blocks = [1 if has("layers.1.layers.0.weight") else counts[0], *counts[2::2]]
        dim = state["features.layers.2.weight"].shape[0]
        variant = {(2, (1, 4, 6, 2)): "mbf", (4, (2, 8, 12, 4)): "mbf_large"}.get(
            (scale, tuple(blocks)), "MobileFaceNet"
        )
        return ForeignStateDict(
            "insightface_mbf",
            f"insightface {variant} (scale {scale}, blocks {blocks}, {dim}-d)",
            f"facerec.models.MobileFaceNet with scale: {scale}, blocks: {blocks}, "
            f"embedding_dim: {dim}",
            state,
        )
    if has("conv1.weight") and has("prelu.weight") and has("features.weight") and has("fc.weight"):
        return _iresnet(state, "insightface", "fc.weight")
    if has("conv1.weight") and has("prelu.weight") and has("head.fc.weight"):
        # facerec's own IResNet (the backbone's state dict, e.g. saved from a .ckpt's backbone)
        return _iresnet(state, "facerec", "head.fc.weight")
    if has("conv1.weight") and has("bn1.weight") and has("layer1.0.conv1.weight"):
        blocks = _stage_blocks(state, r"layer{s}\.(\d+)\.", 4)
        arch = _TV_ARCHS.get((blocks, has("layer1.0.conv3.weight")))
        if arch is None:
            return None
        return ForeignStateDict(
            "torchvision_resnet",
            f"torchvision {arch}",
            f"facerec.models.TorchvisionResNet with arch: {arch}",
            state,
        )
    return None


def _first_problem(err: RuntimeError) -> str:
    """The first missing/unexpected/size-mismatch line of torch's load_state_dict error."""
    lines = [x.strip() for x in str(err).splitlines() if x.strip()]
    return next(iter(lines[1:] or lines), "")[:220]


def load_foreign_state_dict(backbone: nn.Module, found: ForeignStateDict, source: str) -> list[str]:
    """Load a recognised state dict into ``backbone``; returns the names loaded.

    Raises:
        ConfigError: ``backbone`` is not the architecture the file holds, naming both.
    """
    what = f"model.init_from: {source} is a state dict of {found.name}"
    expected = f"expected model.backbone to be {found.expected}"
    if not isinstance(backbone, _CLASSES[found.kind]):
        raise ConfigError(f"{what}, but model.backbone is {type(backbone).__name__}; {expected}")
    if found.kind == "torchvision_resnet":
        return _load_torchvision(backbone, found, what, expected)  # type: ignore[arg-type]
    try:
        if found.kind == "facerec_iresnet":
            backbone.load_state_dict(found.state, strict=True)
        else:
            backbone.load_insightface_state_dict(found.state)  # type: ignore[operator]
    except RuntimeError as e:
        raise ConfigError(
            f"{what} that does not fit this model.backbone ({_first_problem(e)}); {expected}"
        ) from None
    return list(backbone.state_dict())


def _load_torchvision(
    backbone: TorchvisionResNet, found: ForeignStateDict, what: str, expected: str
) -> list[str]:
    if found.name != f"torchvision {backbone.arch}":
        raise ConfigError(f"{what}, but model.backbone has arch {backbone.arch}; {expected}")
    # trunk = Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4)
    index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    own = backbone.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for k, v in found.state.items():
        top, _, rest = k.partition(".")
        if top not in index:  # fc: ImageNet classes, replaced by the face embedding head
            continue
        name = f"trunk.{index[top]}.{rest}"
        if name not in own:
            raise ConfigError(f"{what} with the unknown key {k!r}; {expected}")
        if own[name].shape != v.shape:
            if top == "conv1":  # the 3×3 face stem: ImageNet's 7×7 stem does not fit
                skipped.append(name)
                continue
            raise ConfigError(
                f"{what}, but {k} has shape {tuple(v.shape)} where model.backbone has "
                f"{tuple(own[name].shape)}; {expected}"
            )
        mapped[name] = v
    missing = [k for k in own if k.startswith("trunk.") and k not in mapped and k not in skipped]
    if missing:
        raise ConfigError(f"{what} without {missing[0]} (and {len(missing) - 1} more); {expected}")
    if skipped:
        warnings.warn(
            f"model.init_from: the ImageNet 7×7 stem conv does not fit the 3×3 face stem "
            f"(face_stem: true), so {', '.join(skipped)} starts fresh; the rest of the trunk "
            "is loaded, the embedding head starts fresh",
            stacklevel=2,
        )
    backbone.load_state_dict(mapped, strict=False)
    return list(mapped)
