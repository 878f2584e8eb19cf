"""A re-creation of insightface arcface_torch ``backbones/vit.py`` (``VisionTransformer``) and
of the ``vit_*`` entries of its ``backbones/__init__.py`` ``get_model``: the reference that
``facerec.models.ViT`` is checked against.

Written from insightface's source, independently of facerec's class: the same module tree (so
the same state-dict keys and shapes: top-level ``pos_embed``, ``mask_token``, ``feature``), the
same operations in the same order (so the same numbers, and the same random draws in training:
position dropout, ``random_masking``'s ``torch.rand(N, L)``, each block's drop-path draws), and
its quirks kept: ``random_masking`` is called without the configured ratio (always 0.1), the
``VITBatchNorm`` option, the ``(q @ kᵀ) * scale`` order. What differs, only so that it runs
here: timm's ``DropPath``/``trunc_normal_`` are written out (timm is not a dependency), and the
``torch.cuda.amp.autocast`` blocks are :func:`_cuda_autocast`, which does nothing on a CPU
(as theirs does there) and is only entered on CUDA tensors.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _cuda_autocast(enabled: bool, x: torch.Tensor):
    """insightface's ``torch.cuda.amp.autocast(enabled)``: effective on CUDA only."""
    if x.is_cuda:
        return torch.autocast("cuda", enabled=enabled)
    return contextlib.nullcontext()


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """timm's ``drop_path`` (scale_by_keep=True)."""
    if p == 0.0 or not training:
        return x
    keep = 1 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if keep > 0.0:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return _drop_path(x, self.drop_prob, self.training)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, act_layer=nn.ReLU6, drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class VITBatchNorm(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features
        self.bn = nn.BatchNorm1d(num_features=num_features)

    def forward(self, x):
        return self.bn(x)


class Attention(nn.Module):
    def __init__(
        self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0
    ):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        with _cuda_autocast(True, x):
            bs, nt, ed = x.shape
            qkv = self.qkv(x).reshape(bs, nt, 3, self.num_heads, ed // self.num_heads)
            qkv = qkv.permute(2, 0, 3, 1, 4)
        with _cuda_autocast(False, x):
            q, k, v = qkv[0].float(), qkv[1].float(), qkv[2].float()
            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            attn = self.attn_drop(attn)
            x = (attn @ v).transpose(1, 2).reshape(bs, nt, ed)
        with _cuda_autocast(True, x):
            x = self.proj(x)
            x = self.proj_drop(x)
        return x


class Block(nn.Module):
    def __init__(
        self,
        dim,
        num_heads,
        num_patches,
        mlp_ratio=4.0,
        qkv_bias=False,
        qk_scale=None,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        act_layer=nn.ReLU6,
        norm_layer="ln",
    ):
        super().__init__()
        if norm_layer == "bn":
            self.norm1 = VITBatchNorm(num_features=num_patches)
            self.norm2 = VITBatchNorm(num_features=num_patches)
        elif norm_layer == "ln":
            self.norm1 = nn.LayerNorm(dim)
            self.norm2 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        with _cuda_autocast(True, x):
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchEmbed(nn.Module):
    def __init__(self, img_size=108, patch_size=9, in_channels=3, embed_dim=768):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        _, _, height, width = x.shape
        assert (height, width) == self.img_size, f"Input image size ({height}*{width})"
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(
        self,
        img_size=112,
        patch_size=16,
        in_channels=3,
        num_classes=1000,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=False,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        norm_layer="ln",
        mask_ratio=0.1,
        using_checkpoint=False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, in_channels, embed_dim)
        self.mask_ratio = mask_ratio
        self.using_checkpoint = using_checkpoint
        num_patches = self.num_patches = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        self.blocks = nn.ModuleList(
            [
                Block(
                    dim=embed_dim,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[i],
                    norm_layer=norm_layer,
                    num_patches=num_patches,
                )
                for i in range(depth)
            ]
        )
        if norm_layer == "ln":
            self.norm = nn.LayerNorm(embed_dim)
        elif norm_layer == "bn":
            self.norm = VITBatchNorm(self.num_patches)
        self.feature = nn.Sequential(
            nn.Linear(embed_dim * num_patches, embed_dim, bias=False),
            nn.BatchNorm1d(num_features=embed_dim, eps=2e-5),
            nn.Linear(embed_dim, num_classes, bias=False),
            nn.BatchNorm1d(num_features=num_classes, eps=2e-5),
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def random_masking(self, x, mask_ratio=0.1):
        n, length, d = x.size()
        len_keep = int(length * (1 - mask_ratio))
        noise = torch.rand(n, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones([n, length], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_features(self, x):
        b = x.shape[0]
        x = self.patch_embed(x)
        x = x + self.pos_embed
        x = self.pos_drop(x)
        if self.training and self.mask_ratio > 0:
            x, _, ids_restore = self.random_masking(x)  # insightface passes no ratio: 0.1
        for func in self.blocks:
            if self.using_checkpoint and self.training:
                x = checkpoint(func, x, use_reentrant=False)
            else:
                x = func(x)
        x = self.norm(x.float())
        if self.training and self.mask_ratio > 0:
            mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] - x.shape[1], 1)
            x_ = torch.cat([x[:, :, :], mask_tokens], dim=1)
            x = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        return torch.reshape(x, (b, self.num_patches * self.embed_dim))

    def forward(self, x):
        return self.feature(self.forward_features(x))


#: arcface_torch get_model's ViT entries: name -> (embed_dim, depth, drop_path, mask, checkpoint)
_GET_MODEL = {
    "vit_t": (256, 12, 0.1, 0.1, False),
    "vit_t_dp005_mask0": (256, 12, 0.05, 0.0, False),
    "vit_s": (512, 12, 0.1, 0.1, False),
    "vit_s_dp005_mask_0": (512, 12, 0.05, 0.0, False),
    "vit_b": (512, 24, 0.1, 0.1, True),
    "vit_b_dp005_mask_005": (512, 24, 0.05, 0.05, True),
    "vit_l_dp005_mask_005": (768, 24, 0.05, 0.05, True),
}


def get_model(name: str, num_features: int = 512) -> VisionTransformer:
    """arcface_torch ``get_model(name, num_features=...)`` for its ViT names (112×112, patch 9,
    8 heads, LayerNorm)."""
    dim, depth, dp, mask, ckpt = _GET_MODEL[name]
    return VisionTransformer(
        img_size=112,
        patch_size=9,
        num_classes=num_features,
        embed_dim=dim,
        depth=depth,
        num_heads=8,
        drop_path_rate=dp,
        norm_layer="ln",
        mask_ratio=mask,
        using_checkpoint=ckpt,
    )
