"""Vision Transformer (ViT) backbones of insightface arcface_torch (``vit_t/s/b/l``, VARIANTS).

As insightface ``backbones/vit.py``: patch embedding (9×9 patches: 12×12 of the top-left 108×108
pixels at 112×112) plus a learned position embedding; pre-norm blocks (float32 attention, ReLU6
MLP, stochastic depth); a final norm; a head Linear(N·C → C) → BN1d → Linear(C → D) → BN1d on
all tokens. In training ``mask_ratio`` of the patches (insightface: always 10%) are dropped
after the position embedding and refilled with ``mask_token`` after the norm. qkv, proj and the
MLP follow the ambient precision (insightface forces fp16). Three names differ from
insightface's; :meth:`ViT.load_insightface_state_dict` maps them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import StochasticDepth

from facerec.errors import ConfigError
from facerec.models.base import Backbone

#: variant -> constructor arguments (arcface_torch ``get_model``; all with 8 heads, the default)
VARIANTS: dict[str, dict[str, Any]] = {
    "vit_t": dict(embed_dim=256, depth=12, drop_path_rate=0.1, mask_ratio=0.1),
    "vit_s": dict(embed_dim=512, depth=12, drop_path_rate=0.1, mask_ratio=0.1),
    "vit_b": dict(embed_dim=512, depth=24, drop_path_rate=0.1, mask_ratio=0.1, checkpointing=True),
    "vit_l": dict(
        embed_dim=768, depth=24, drop_path_rate=0.05, mask_ratio=0.05, checkpointing=True
    ),
}


class PatchNorm(nn.Module):
    """insightface's ``VITBatchNorm``: BatchNorm1d over the patch axis of (B, N, C) tokens
    (each patch position is a channel); the ``norm_layer: bn`` alternative to LayerNorm."""

    def __init__(self, num_patches: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class Mlp(nn.Module):
    """Linear(C → hidden) → ReLU6 → Dropout → Linear(hidden → C) → Dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention; scores, softmax and the weighted sum in float32."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, heads, N, C/heads)
        device = x.device.type
        if torch.is_autocast_enabled(device):  # insightface's autocast(False) block
            with torch.autocast(device, enabled=False):
                x = self._attend(qkv)
        else:
            x = self._attend(qkv)
        return self.proj_drop(self.proj(x))

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(3, B, heads, N, C/heads) -> (B, N, C): softmax(q·kᵀ·scale)·v in float32."""
        _, b, h, n, d = qkv.shape
        q, k, v = qkv[0].float(), qkv[1].float(), qkv[2].float()
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return (self.attn_drop(attn) @ v).transpose(1, 2).reshape(b, n, h * d)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each branch
    through stochastic depth; ``norm()`` makes a norm layer."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        norm: Callable[[], nn.Module],
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.norm1 = norm()
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        # timm's DropPath: a sample's branch zeroed with probability p, the others scaled 1/(1 − p)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = norm()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, N, C) patch tokens plus the learned position embedding, then
    dropout. A conv with kernel = stride = ``patch_size``: N = (H // p)·(W // p); the pixels
    past the last whole patch (4 of 112 with p = 9) are not seen, as in insightface."""

    def __init__(
        self, input_size: tuple[int, int], patch_size: int, dim: int, drop: float = 0.0
    ) -> None:
        super().__init__()
        self.grid = (input_size[0] // patch_size, input_size[1] // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, dim))
        self.pos_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.pos_drop(x + self.pos_embed)


class PatchMasking(nn.Module):
    """Random patch masking (MAE's per-sample shuffle, as arcface_torch): :meth:`drop` keeps
    ``int(N·(1 − ratio))`` random tokens per sample, :meth:`fill` puts them back in place with
    the learned ``mask_token`` where the dropped ones were."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))

    def drop(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, C) -> kept tokens (B, K, C) and ``restore`` (B, N) long: position i of the
        sequence [kept, masked] that token i of the original came from."""
        b, n, c = x.shape
        keep = int(n * (1 - self.ratio))
        shuffle = torch.argsort(torch.rand(b, n, device=x.device), dim=1)
        restore = torch.argsort(shuffle, dim=1)
        kept = torch.gather(x, 1, shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, c))
        return kept, restore

    def fill(self, x: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Kept tokens (B, K, C) and ``restore`` (B, N) -> (B, N, C), masked ones = mask_token."""
        b, k, c = x.shape
        tokens = self.mask_token.to(x.dtype).expand(b, restore.shape[1] - k, c)
        full = torch.cat([x, tokens], dim=1)
        return torch.gather(full, 1, restore.unsqueeze(-1).expand(-1, -1, c))


class ViT(Backbone):
    """Vision Transformer embedding network (insightface arcface_torch ``vit_*``).

    Args:
        embedding_dim: size D of the output embedding (insightface's ``num_features``, 512).
        input_size: (height, width) of the input; 112×112 in insightface's models.
        patch_size: side of the square patches (9: 12×12 patches at 112×112).
        embed_dim: token width C (256 vit_t, 512 vit_s/vit_b, 768 vit_l).
        depth: number of transformer blocks (12 vit_t/vit_s, 24 vit_b/vit_l).
        num_heads: attention heads; must divide ``embed_dim`` (8 in every insightface variant).
        mlp_ratio: MLP hidden width / C (4).
        qkv_bias: bias on the query/key/value projection (False in insightface).
        drop_rate: dropout after the position embedding, in the MLP and after attention's
            projection (0).
        attn_drop_rate: dropout on the attention weights (0).
        drop_path_rate: stochastic depth of the last block, linearly from 0 at the first.
        norm_layer: "ln" (LayerNorm over C, every insightface variant) or "bn" (BatchNorm
            over the patch axis, insightface's ``VITBatchNorm``; needs ``mask_ratio: 0``).
        mask_ratio: fraction of patches masked per sample in training (0 = off).
        checkpointing: recompute each block's activations in backward (activation
            checkpointing, insightface's ``using_checkpoint``) to save memory.

    Shapes: (B, 3, H, W) float in [-1, 1] -> (B, embedding_dim).
    """

    insightface_names = (
        ("feature", "head"),
        ("pos_embed", "patch_embed.pos_embed"),
        ("mask_token", "masking.mask_token"),
    )

    def __init__(
        self,
        embedding_dim: int = 512,
        input_size: tuple[int, int] = (112, 112),
        patch_size: int = 9,
        embed_dim: int = 256,
        depth: int = 12,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer: str = "ln",
        mask_ratio: float = 0.1,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        size = (int(input_size[0]), int(input_size[1]))
        if patch_size < 1 or min(size) < patch_size:
            raise ConfigError(
                f"ViT patch_size {patch_size} with input_size {list(size)}: expected "
                f"1 <= patch_size <= the input's smaller side"
            )
        if depth < 1 or num_heads < 1 or embed_dim < 1 or embed_dim % num_heads:
            raise ConfigError(
                f"ViT depth {depth}, embed_dim {embed_dim}, num_heads {num_heads}: expected "
                "depth >= 1 and embed_dim a multiple of num_heads"
            )
        if norm_layer not in ("ln", "bn"):
            raise ConfigError(f"ViT norm_layer {norm_layer!r}: expected 'ln' or 'bn'")
        n = (size[0] // patch_size) * (size[1] // patch_size)
        if not 0 <= mask_ratio < 1 or (mask_ratio > 0 and int(n * (1 - mask_ratio)) < 1):
            raise ConfigError(
                f"ViT mask_ratio {mask_ratio} with {n} patches: expected 0 <= mask_ratio < 1 "
                "leaving at least one patch"
            )
        if norm_layer == "bn" and mask_ratio > 0:
            raise ConfigError(
                "ViT norm_layer 'bn' normalises each patch position, so it cannot see a masked "
                f"sequence; set mask_ratio: 0 (got {mask_ratio}) or norm_layer: ln"
            )
        drops = dict(
            drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate
        )
        for name, p in drops.items():
            if not 0 <= p < 1:
                raise ConfigError(f"ViT {name} is {p}; expected 0 <= {name} < 1")
        self.embedding_dim = int(embedding_dim)
        self.input_size = size
        self.embed_dim = int(embed_dim)
        self.checkpointing = bool(checkpointing)
        self.patch_embed = PatchEmbed(size, int(patch_size), self.embed_dim, drop_rate)
        n = self.num_patches = self.patch_embed.num_patches
        rates = [float(r) for r in torch.linspace(0, drop_path_rate, depth, device="cpu")]

        def norm() -> nn.Module:
            return nn.LayerNorm(self.embed_dim) if norm_layer == "ln" else PatchNorm(n)

        self.blocks = nn.ModuleList(
            Block(
                self.embed_dim, num_heads, norm, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, r
            )
            for r in rates
        )
        self.norm = norm()
        self.masking = PatchMasking(self.embed_dim, mask_ratio)
        self.head = nn.Sequential(
            nn.Linear(self.embed_dim * n, self.embed_dim, bias=False),
            nn.BatchNorm1d(self.embed_dim, eps=2e-5),
            nn.Linear(self.embed_dim, self.embedding_dim, bias=False),
            nn.BatchNorm1d(self.embedding_dim, eps=2e-5),
        )
        nn.init.normal_(self.masking.mask_token, std=0.02)
        nn.init.trunc_normal_(self.patch_embed.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N·C): the normalised patch tokens, flattened for the head."""
        x = self.patch_embed(x)
        masked = self.training and self.masking.ratio > 0
        if masked:
            x, restore = self.masking.drop(x)
        for block in self.blocks:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = self.norm(x.float())
        if masked:
            x = self.masking.fill(x, restore)
        return x.flatten(1)

    def stages(self) -> list[list[nn.Module]]:
        """Four stages: the patch embedding with the first quarter of the blocks, then a
        quarter each, the last with the final norm and the mask token."""
        d = len(self.blocks)
        cut = [(d * i + 2) // 4 for i in range(5)]
        parts: list[list[nn.Module]] = [list(self.blocks[cut[i] : cut[i + 1]]) for i in range(4)]
        parts[0].insert(0, self.patch_embed)
        parts[3] += [self.norm, self.masking]
        return parts


def insightface_vit_layout(state: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """Recognise an insightface ViT state dict: (readable name, the model.backbone config that
    takes it; ``num_heads``, not in the file, is left at 8), or None for any other dict."""
    need = ("patch_embed.proj.weight", "pos_embed", "mask_token", "feature.2.weight")
    if not all(k in state for k in need):
        return None
    proj = state["patch_embed.proj.weight"]
    dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    out = int(state["feature.2.weight"].shape[0])
    variant = next(
        (v for v, a in VARIANTS.items() if (a["embed_dim"], a["depth"]) == (dim, depth)), "ViT"
    )
    args = f"embed_dim: {dim}, depth: {depth}, patch_size: {patch}, embedding_dim: {out}"
    if "norm.bn.weight" in state:
        args += ", norm_layer: bn, mask_ratio: 0"
    if "blocks.0.attn.qkv.bias" in state:
        args += ", qkv_bias: true"
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and fc1.shape[0] != 4 * dim:
        args += f", mlp_ratio: {fc1.shape[0] / dim:g}"
    name = f"insightface {variant} (embed_dim {dim}, depth {depth}, {out}-d)"
    return name, f"facerec.models.ViT with {args}"


def _variant(name: str, kwargs: dict[str, Any]) -> ViT:
    return ViT(**{**VARIANTS[name], **kwargs})


def vit_t(**kwargs: Any) -> ViT:
    """insightface ``vit_t`` (VARIANTS; ``kwargs`` override)."""
    return _variant("vit_t", kwargs)


def vit_s(**kwargs: Any) -> ViT:
    """insightface ``vit_s``."""
    return _variant("vit_s", kwargs)


def vit_b(**kwargs: Any) -> ViT:
    """insightface ``vit_b``."""
    return _variant("vit_b", kwargs)


def vit_l(**kwargs: Any) -> ViT:
    """insightface ``vit_l_dp005_mask_005``."""
    return _variant("vit_l", kwargs)
