"""FaceRecognitionModule: backbone + embedding head + margin head + losses, wired for Lightning.

No maths lives here (the parts are plain modules tested on their own). Checkpoints carry a
``facerec`` entry with the label → identity map and the preprocessing the network expects, so
``FaceRecognitionModule.load_from_checkpoint(path)`` needs no other argument.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import nn

from facerec import __version__
from facerec.base import distributed, lightning_compat
from facerec.base.options import coerce
from facerec.data.datasets import normalize_images
from facerec.data.interface import TrainingData
from facerec.errors import ConfigError, DataError, FacerecError
from facerec.heads import ArcFaceHead, MarginHead
from facerec.inference.checkpoint import (
    PRETRAINED,
    check_hparams_file,
    check_hyperparameters,
    load_pretrained_into,
    not_a_file,
    read_checkpoint_dict,
    shape_mismatches,
    weights_architecture,
)
from facerec.inference.preprocess import Preprocess
from facerec.metrics.verification import best_threshold_accuracy
from facerec.models.base import Backbone
from facerec.models.iresnet import IResNet
from facerec.models.pretrained import identify_state_dict, load_foreign_state_dict
from facerec.training.distill import DistillOptions, FrozenTeacher, make_projection
from facerec.training.finetune import FreezeOptions, Freezer, LrMultipliers, param_groups
from facerec.training.optim import OptimOptions, lr_factor, upgrade_flat_keys
from facerec.training.refresh import check_data_callbacks

HeadFactory = Callable[[int, int], MarginHead]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)


@dataclass
class CenterLossOptions:
    """CenterLoss (Wen et al. 2016): total loss += weight·L_c; centres move by rate alpha."""

    weight: float = 0.01
    alpha: float = 0.5


class FaceRecognitionModule(pl.LightningModule):
    """Train an embedding network with a margin head, CenterLoss and/or a metric loss.

    Args:
        backbone: the embedding network, (B, 3, H, W) -> (B, D) (IResNet, TorchvisionResNet).
        head: margin head class (and its arguments), built as ``head(D, num_classes)``;
            None trains with ``metric_loss`` alone.
        num_classes: training identities; LightningCLI links it from ``data.num_classes``.
        center_loss: add CenterLoss with this weight and centre learning rate alpha.
        metric_loss: a triplet/contrastive loss on the embeddings, added with
            ``metric_loss_weight``.
        metric_loss_weight: the weight of ``metric_loss`` in the total loss (>= 0).
        optim: optimiser and learning-rate schedule (:class:`facerec.training.optim.OptimOptions`:
            name, lr, lr_reference_batch, momentum, weight_decay, warmup_epochs, schedule,
            poly_power); None: its defaults.
        batch_size: images per device and step, the batch of the learning-rate scaling rule;
            ``facerec fit`` links it from the data (``data.batch_size``, P·K for P×K batches).
            None uses ``optim.lr`` unscaled.
        channels_last: run the backbone in channels-last memory format.
        compile: compile the backbone with ``torch.compile`` when a fit starts (``mode``:
            ``compile_mode``, None = torch's default). The weights keep their names
            (``nn.Module.compile`` compiles in place; no ``_orig_mod.`` in checkpoints), and a
            model loaded from a checkpoint for evaluation or export is not compiled.
        compile_mode: ``torch.compile``'s ``mode`` (None: torch's default).
        init_from: pre-trained weights that start a fit (fine-tuning): a facerec checkpoint
            (``.ckpt``: the backbone, all of whose weights must be there with the same shapes,
            and the margin head when it has the same shape), an insightface arcface_torch
            ``backbone.pth`` (IResNet r18/r34/r50/r100, MobileFaceNet mbf) or torchvision's
            ImageNet ResNet ``.pth`` (see :func:`load_init_weights`). Loaded at the start of
            ``fit`` only; ``--ckpt_path`` (resuming) overrides it. With a new margin head (other
            identities) only the backbone is taken.
        lr_multipliers: learning rate of the backbone's trunk, its embedding head and the
            margin head as multiples of ``lr`` (:class:`facerec.training.finetune.LrMultipliers`).
        freeze: freeze the trunk (or its first N stages, and optionally the embedding head)
            for the first K steps or the whole run
            (:class:`facerec.training.finetune.FreezeOptions`);
            frozen weights and their BatchNorm statistics stay exactly as loaded.
        distill: embedding distillation from a frozen teacher (.ckpt or .onnx): adds
            ``weight`` × ``loss`` (l2 | cosine) between this model's and the teacher's embeddings
            of each batch (:class:`facerec.training.distill.DistillOptions`). ``head: null`` with no
            metric loss then trains by distillation alone.
    """

    def __init__(
        self,
        backbone: Backbone = lazy_instance(IResNet, depth=50),
        head: HeadFactory | None = None,
        num_classes: int = 0,
        center_loss: CenterLossOptions | None = None,
        metric_loss: nn.Module | None = None,
        metric_loss_weight: float = 1.0,
        optim: OptimOptions | None = None,
        batch_size: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: CompileMode | None = None,
        init_from: str | None = None,
        lr_multipliers: LrMultipliers | None = None,
        freeze: FreezeOptions | None = None,
        distill: DistillOptions | None = None,
    ) -> None:
        super().__init__()
        if lightning_compat.given_hyperparameters() is not None:  # from a config: store it
            self.save_hyperparameters()
        else:  # built in Python from objects: store what is plain data
            self.save_hyperparameters(ignore=["backbone", "head", "metric_loss"])
            for key in ("center_loss", "optim", "lr_multipliers", "freeze", "distill"):
                if is_dataclass(self.hparams[key]):  # as plain data: weights_only-loadable
                    self.hparams[key] = asdict(self.hparams[key])
        self.distill = coerce(distill, DistillOptions, "model.distill")
        if self.distill is not None:
            self.distill.validate()  # type: ignore[attr-defined]
        if head is None and metric_loss is None and self.distill is None:
            head = ArcFaceHead
        self.backbone = backbone
        self.embedding_dim = int(backbone.embedding_dim)
        self.head: MarginHead | None = None
        if head is not None:
            if num_classes < 2:
                raise ConfigError(
                    f"model.num_classes is {num_classes}; a margin head needs the number of "
                    "training identities (>= 2). With `facerec fit` it comes from the data."
                )
            self.head = head(self.embedding_dim, num_classes)
        self.center_loss = None
        self.center_loss_weight = 0.0
        if center_loss is not None:
            if num_classes < 2:
                raise ConfigError("model.center_loss needs model.num_classes >= 2")
            from facerec.losses.center import CenterLoss

            opts = coerce(center_loss, CenterLossOptions, "model.center_loss")
            self.center_loss = CenterLoss(num_classes, self.embedding_dim, alpha=opts.alpha)
            self.center_loss_weight = opts.weight
        if not metric_loss_weight >= 0:  # also NaN
            raise ConfigError(
                f"model.metric_loss_weight is {metric_loss_weight!r}; expected a number >= 0"
            )
        self.optim: OptimOptions = coerce(optim, OptimOptions, "model.optim") or OptimOptions()
        self.optim.check()
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"model.batch_size is {batch_size!r}; expected an integer >= 1")
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.metric_loss = metric_loss
        self.metric_loss_weight = metric_loss_weight
        self.channels_last = channels_last
        if compile_mode not in (None, *COMPILE_MODES):
            raise ConfigError(
                f"model.compile_mode is {compile_mode!r}; expected one of "
                f"{', '.join(COMPILE_MODES)}"
            )
        self.compile_backbone = bool(compile)  # (nn.Module.compile is a method: not shadowed)
        self.compile_mode = compile_mode
        self._compiled = False
        self.init_from = init_from
        self._init_loaded = False
        self.lr_multipliers = coerce(lr_multipliers, LrMultipliers, "model.lr_multipliers")
        self.freeze = coerce(freeze, FreezeOptions, "model.freeze")
        self._freezer: Freezer | None = None
        self._teacher: FrozenTeacher | None = None  # not a submodule: never saved or trained
        self.distill_proj: nn.Linear | None = None  # made in setup / on_load_checkpoint
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.class_names: list[str] | None = None
        self._data: TrainingData | None = None  # attach_data: pairs, class names, baseline
        self.val_history: list[tuple[int, float]] = []
        self.untrained_val_acc: float | None = None
        self.start_weights: str | None = None  # what the sanity check measured: "ckpt", ...
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._bad_images: set[int] = set()  # distinct unreadable training images met

    @classmethod
    def from_config(cls, **config: Any) -> FaceRecognitionModule:
        """Build from a YAML-style config (class_path/init_args), stored as the hyper-parameters
        so that ``load_from_checkpoint(path)`` alone reloads it."""
        return lightning_compat.from_config(cls, config)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | os.PathLike[str],
        map_location: Any = None,
        hparams_file: str | os.PathLike[str] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> FaceRecognitionModule:
        """Lightning's ``load_from_checkpoint``, safe for a file of unknown origin: read with
        ``weights_only=True``, and its hyper-parameters (and ``hparams_file``'s) may name only
        facerec's own classes. Raises :class:`DataError` naming the file otherwise."""
        if kwargs.pop("weights_only", True) is not True:
            raise ConfigError(
                "load_from_checkpoint: facerec reads checkpoints only with weights_only=True"
            )
        ckpt = read_checkpoint_dict(Path(checkpoint_path))
        check_hyperparameters(ckpt, checkpoint_path)
        if hparams_file is not None:  # merged over the checkpoint's before the module is built
            check_hparams_file(hparams_file)
        hp = ckpt.get("hyper_parameters") or {}
        upgraded = upgrade_flat_keys(hp)  # a checkpoint from before model.optim: flat keys
        if upgraded is not hp and "optim" not in kwargs:
            kwargs["optim"] = upgraded["optim"]
        del ckpt
        return super().load_from_checkpoint(  # type: ignore[return-value]
            checkpoint_path,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=True,
            **kwargs,
        )

    def attach_data(self, data: TrainingData) -> None:
        """Take the identity names, the lr-scaling batch size (unless ``batch_size`` was given)
        and, at each validation, the held-out ``pairs`` from ``data``. ``facerec fit`` calls it;
        in Python call it before ``trainer.fit``, or the fit has no ``val/acc``."""
        names = list(data.class_names) if data.class_names is not None else None
        if names is not None and self.head is not None and len(names) != self.num_classes:
            raise ConfigError(
                f"the data have {len(names)} identities but the model was built for "
                f"{self.num_classes}; leave model.num_classes unset so `facerec fit` links it "
                "from the data"
            )
        self.class_names = names
        self._data = data
        if self.batch_size is None and getattr(data, "batch_size", None):
            self.batch_size = int(data.batch_size)

    @property
    def training_data(self) -> TrainingData | None:
        """What :meth:`attach_data` was given, or None."""
        return self._data

    @property
    def preprocess(self) -> Preprocess:
        """What the embedding network expects as input."""
        return Preprocess.for_backbone(self.backbone)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise the loaders' uint8 (B, 3, H, W) images on the device, in the run's input
        precision."""
        first = batch[0] if isinstance(batch, list | tuple) and batch else None
        if not isinstance(first, torch.Tensor) or first.dtype != torch.uint8:
            return batch
        size, want = tuple(first.shape[-2:]), tuple(self.backbone.input_size)
        if size != want:
            raise ConfigError(
                f"the data's images are {size} but the backbone takes {want}; set "
                f"data.image_size: {list(want)} (`facerec fit` gives the backbone data.image_size "
                "where the backbone has an input_size)"
            )
        images = normalize_images(first)
        if lightning_compat.attached_trainer(self) is not None:
            images = self.trainer.precision_plugin.convert_input(images)
        return [images, *batch[1:]] if isinstance(batch, list) else (images, *batch[1:])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised (or uint8) RGB -> (B, D) raw embeddings."""
        images = normalize_images(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def compute_losses(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        teacher_embeddings: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """All loss terms for a batch; ``loss`` is their weighted sum. ``teacher_embeddings``
        (B, D_t): the distillation teacher's."""
        out: dict[str, torch.Tensor] = {}
        total = embeddings.new_zeros((), dtype=torch.float32)
        if teacher_embeddings is not None and self.distill is not None:
            # not at the top: facerec.losses imported before facerec.models reorders --help
            from facerec.losses.distill import distill_loss

            student = embeddings if self.distill_proj is None else self.distill_proj(embeddings)
            out["distill"] = distill_loss(student, teacher_embeddings, self.distill.loss)
            total = total + self.distill.weight * out["distill"]
        if self.head is not None and self.head.returns_loss:
            out["ce"] = self.head(embeddings, labels)
            total = total + out["ce"]
        elif self.head is not None:
            logits = self.head(embeddings, labels)
            out["ce"] = F.cross_entropy(logits.float(), labels)
            total = total + out["ce"]
            reg = self.head.regularizer(embeddings)
            if reg is not None:
                out["head_reg"] = reg
                total = total + reg
            with torch.no_grad():
                out["acc"] = (logits.argmax(1) == labels).float().mean()
        if self.center_loss is not None:
            out["center"] = self.center_loss(embeddings.float(), labels)
            total = total + self.center_loss_weight * out["center"]
        if self.metric_loss is not None:
            out["metric"] = self.metric_loss(embeddings, labels)
            total = total + self.metric_loss_weight * out["metric"]
        out["loss"] = total
        return out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        if len(batch) > 2:  # indices of unreadable images replaced in this batch, else -1
            self._bad_images.update(batch[2][batch[2] >= 0].tolist())
        teacher = self._teacher(images) if self._teacher is not None else None
        losses = self.compute_losses(self(images), labels, teacher)
        if not torch.isfinite(losses["loss"]):
            bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
            raise FacerecError(
                f"non-finite loss at global step {self.global_step}: {', '.join(bad)} "
                "became NaN/inf; lower the learning rate, check the data, or use bf16 not fp16"
            )
        bs = images.shape[0]
        for k, v in losses.items():
            self.log(f"train/{k}", v.detach(), prog_bar=k in ("loss", "acc"), batch_size=bs)
        for k, v in (getattr(self.metric_loss, "stats", None) or {}).items():
            self.log(f"train/metric/{k}", v, batch_size=bs)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        return losses["loss"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._freezer is not None:
            self._freezer.train_batch_start(self.global_step)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._freezer is not None:
            self._freezer.before_optimizer_step(self.global_step)

    def _gather_rows(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's rows of each (N_r, ...) tensor, in rank order (a collective: every rank
        joins, even one with no rows); the tensors themselves in one process."""
        sizes = distributed.gather_sizes(len(tensors[0]), self.device)
        if not sum(sizes):
            return list(tensors)
        return [distributed.all_gather_rows(t.to(self.device), sizes) for t in tensors]

    def on_train_epoch_end(self) -> None:
        mine = torch.tensor(sorted(self._bad_images), dtype=torch.int64)
        bad = set(self._gather_rows(mine)[0].tolist())  # each rank met its own files: the union
        if bad and distributed.rank() == 0:
            warnings.warn(
                f"skipped {len(bad)} distinct corrupt or unreadable training images "
                "so far (each was replaced by another image of the same identity); set "
                "data.strict: true to stop",
                stacklevel=1,
            )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, index = batch
        emb = self(images) + self(torch.flip(images, dims=[3]))  # flip test
        self._val_outputs.append((F.normalize(emb.float(), dim=1), index))

    def on_validation_epoch_end(self) -> None:
        local = self._val_outputs
        emb = torch.cat([e for e, _ in local]) if local else torch.zeros(0, self.embedding_dim)
        idx = torch.cat([i for _, i in local]) if local else torch.zeros(0, dtype=torch.int64)
        self._val_outputs.clear()
        emb, idx = self._gather_rows(emb, idx)
        pairs = self._data.pairs if self._data is not None else None
        if pairs is None or len(idx) == 0:
            return
        scored = score_embedded_pairs(emb, idx, pairs)
        if scored is None:  # no pair has both images embedded (e.g. a short sanity check)
            return
        acc, thr, n_scored = scored
        if self.trainer.sanity_checking:
            if n_scored == len(pairs[2]):  # the check covered every pair (num_sanity_val_steps -1)
                self.untrained_val_acc = acc
                self.start_weights = (
                    "ckpt" if self.trainer.ckpt_path else "init_from" if self.init_from else None
                )
            return
        self.val_history.append((self.global_step, acc))
        self.log("val/acc", acc, prog_bar=True, sync_dist=False)
        self.log("val/threshold", thr, sync_dist=False)
        self.log("val/pairs", float(n_scored), sync_dist=False)

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim
        if o.lr_reference_batch and not self.batch_size:  # never a silently unscaled rate
            raise ConfigError(
                f"model.batch_size is not set, so model.optim.lr ({o.lr}, for a batch of "
                f"{o.lr_reference_batch}) cannot be scaled to this run's batch; `facerec fit` "
                "links it from the data: in Python call model.attach_data(datamodule) before "
                "trainer.fit, pass batch_size=, or set optim lr_reference_batch=None"
            )
        world = self.trainer.world_size * self.trainer.accumulate_grad_batches
        lr = o.scaled_lr(self.batch_size * world if self.batch_size else None)
        params = param_groups(self, self.lr_multipliers, lr)  # type: ignore[arg-type]
        opt = o.build_optimizer(params, lr)
        if self.head is not None:  # a sharded head saves its rows' optimiser state gathered
            self.head.attach_optimizer(opt)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = self.trainer.max_epochs
        steps_per_epoch = total / epochs if epochs and epochs > 0 else total
        warmup = min(round(o.warmup_epochs * steps_per_epoch), total // 2)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, total, warmup, o.schedule, o.poly_power)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def setup(self, stage: str) -> None:
        # a sharded head's per-rank rows stay out of DDP's all-reduce (DDP reads this attribute)
        if self.head is not None and self.head.ddp_ignore:
            self._ddp_params_and_buffers_to_ignore = [f"head.{n}" for n in self.head.ddp_ignore]
        if stage != "fit":
            return
        if self.compile_backbone and not self._compiled:
            self.backbone.compile(mode=self.compile_mode)  # in place: state-dict keys unchanged
            self._compiled = True
        if self.init_from and not self._init_loaded:
            load_init_weights(self, self.init_from)
            self._init_loaded = True
        if self.freeze is not None and self._freezer is None:
            self._freezer = Freezer(self.backbone, self.freeze)  # type: ignore[arg-type]
            self._freezer.setup()
        if self.distill is not None and self._teacher is None:
            pre = self.preprocess
            self._teacher = FrozenTeacher(self.distill.teacher, pre.mean, pre.std)
            if self.distill_proj is None:
                self.distill_proj = make_projection(self.embedding_dim, self._teacher.embedding_dim)
        if self._data is not None:  # the sampler's refresh is there
            check_data_callbacks(self.trainer, self._data)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["facerec"] = {
            "version": __version__,
            "class_names": self.class_names,
            "preprocess": self.preprocess.to_dict(),
            "val_history": [[int(s), float(a)] for s, a in self.val_history],
            "untrained_val_acc": self.untrained_val_acc,
            "start_weights": self.start_weights,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        proj = (checkpoint.get("state_dict") or {}).get("distill_proj.weight")
        if proj is not None and self.distill_proj is None:  # before the state dict is loaded
            self.distill_proj = make_projection(int(proj.shape[1]), int(proj.shape[0]))
        self._check_checkpoint_shapes(checkpoint.get("state_dict") or {})
        meta = checkpoint.get("facerec") or {}
        self.class_names = meta.get("class_names")
        history = meta.get("val_history")
        if isinstance(history, list):
            self.val_history = [(int(s), float(a)) for s, a in history]
        if meta.get("untrained_val_acc") is not None:
            self.untrained_val_acc = float(meta["untrained_val_acc"])
            self.start_weights = meta.get("start_weights")

    def _check_checkpoint_shapes(self, state: dict[str, Any]) -> None:
        """One line naming the first tensors whose shapes differ from the checkpoint's, before
        Lightning's page of "size mismatch" lines."""
        own = {  # a head with ddp_ignore checks its own rows (its state dict is a collective)
            f"{name}.{k}": t.shape
            for name, child in self.named_children()
            if not (child is self.head and self.head.ddp_ignore)
            for k, t in child.state_dict(keep_vars=True).items()  # the names files hold
        }
        if wrong := shape_mismatches(own, state, here="here"):
            more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
            raise ConfigError(
                f"the checkpoint does not fit this model: {'; '.join(wrong[:3])}{more}; expected "
                "a checkpoint of the same architecture and number of identities"
            )


def score_embedded_pairs(
    emb: torch.Tensor, idx: torch.Tensor, pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[float, float, int] | None:
    """Best-threshold accuracy over the pairs whose two images were both embedded.

    ``emb`` (N, D) normalised embeddings of validation images ``idx`` (N,) (any order, repeats
    allowed); ``pairs`` = (i1, i2, same). Returns (accuracy, threshold, pairs scored), or None
    when no genuine and impostor pair has both ends embedded.
    """
    i1, i2, same = (np.asarray(a) for a in pairs)
    idx_np = idx.detach().cpu().numpy().astype(np.int64)
    size = int(max(idx_np.max(), i1.max(initial=-1), i2.max(initial=-1))) + 1
    table = np.zeros((size, emb.shape[1]), dtype=np.float32)
    table[idx_np] = emb.detach().float().cpu().numpy()
    seen = np.zeros(size, dtype=bool)
    seen[idx_np] = True
    keep = seen[i1] & seen[i2]
    if not keep.any() or same[keep].all() or not same[keep].any():
        return None
    acc, thr = best_threshold_accuracy((table[i1[keep]] * table[i2[keep]]).sum(1), same[keep])
    return float(acc), float(thr), int(keep.sum())


def load_init_weights(module: FaceRecognitionModule, path: str) -> list[str]:
    """Copy pre-trained weights from ``path`` into ``module`` (``model.init_from``).

    ``path``: a facerec ``.ckpt`` (the whole backbone, and the margin head when its shape
    matches), an insightface arcface_torch ``backbone.pth``, torchvision's ImageNet ResNet
    ``.pth`` or a packaged model's name; read with ``weights_only=True``. Returns the names
    copied. Raises ConfigError (missing file, another architecture) or DataError (unknown layout).
    """
    p = Path(path)
    if str(path) in PRETRAINED and not p.exists():  # a packaged model by name (dlib-r29)
        return load_pretrained_into(module.backbone, str(path))
    expected = (
        "expected a facerec .ckpt, an insightface arcface_torch backbone.pth, a torchvision "
        f"ResNet .pth or a packaged model ({', '.join(PRETRAINED)})"
    )
    if problem := not_a_file(p, expected, suffixes=(".ckpt", ".pth", ".pt")):
        raise ConfigError(f"model.init_from: {problem}")
    ckpt = read_checkpoint_dict(p, expected)
    check_hyperparameters(ckpt, p)  # only weights are read, but a file naming code is refused
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        # a bare state dict, or insightface's training checkpoint (checkpoint_gpu_0.pt)
        bare = ckpt.get("state_dict_backbone", ckpt)
        found = identify_state_dict(bare) if isinstance(bare, dict) else None
        if found is None:
            raise DataError(
                f"model.init_from: {p} is neither a Lightning checkpoint (no 'state_dict') nor "
                f"a state dict of a known layout; {expected}"
            )
        return [f"backbone.{k}" for k in load_foreign_state_dict(module.backbone, found, str(p))]
    own = module.state_dict()
    copied: list[str] = []
    for part, required in (("backbone.", True), ("head.", False)):
        keys = [k for k in own if k.startswith(part)]
        if not keys:
            continue
        missing = [k for k in keys if k not in state]
        wrong = [k for k in keys if k in state and state[k].shape != own[k].shape]
        if missing or wrong:
            if not required:
                continue  # a head of another size (other identities) is simply not loaded
            bad = ", ".join(
                [f"{k} missing" for k in missing[:3]]
                + [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]]
            )
            held = weights_architecture(
                {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
            )
            raise ConfigError(
                f"model.init_from: the backbone in {p} does not match this model's ({bad})"
                f"{held}; expected a checkpoint of the same backbone architecture"
            )
        module.load_state_dict({k: state[k] for k in keys}, strict=False)
        copied += keys
    return copied
