"""The ``facerec`` command: fit / validate / test through LightningCLI (any config key can be
overridden, ``--trainer.max_steps 10``), plus the argparse tools of :data:`TOOL_COMMANDS`."""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import warnings

from facerec import __version__
from facerec.errors import ConfigError, FacerecError

LIGHTNING_COMMANDS = ("fit", "validate", "test")
#: subcommand -> (module, one-line description); each module has ``main(argv) -> int``.
TOOL_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("facerec.data.synthetic", "write synthetic face identities as an image folder"),
    "align": ("facerec.align.cli", "detect and align faces in photos onto the 112x112 template"),
    "eval": (
        "facerec.eval.cli",
        "verification (LFW .bin, pairs) and FAISS identification benchmarks",
    ),
    "export": ("facerec.export.cli", "export the embedding network to ONNX and check it"),
    "embed": ("facerec.eval.embed_cli", "embed images or a folder into embeddings.npy"),
    "verify": ("facerec.eval.verify_cli", "are two face images one person? score, probability"),
    "doctor": ("facerec.eval.doctor_cli", "find duplicates, label errors and benchmark overlap"),
    "plot-features": ("facerec.visualize", "draw the 2-D/3-D features each margin head learns"),
    "recipes": ("facerec.recipes", "list the packaged training recipes or copy one out to edit"),
}

HELP = """usage: facerec <command> [options]

Face-recognition training and evaluation.

training (LightningCLI; `facerec fit --help` for every option):
  fit           train a model:  facerec fit --config configs/quickstart.yaml
  validate      run held-out verification of a checkpoint (--ckpt_path)
  test          same as validate on the test split

tools:
{tools}

Any config key can be overridden with dotted options, e.g. --trainer.max_steps 10 --data.root DIR.
"""


def _cli_class():
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.cli import LightningArgumentParser

    from facerec.base import lightning_compat
    from facerec.data.datamodule import FaceDataModule
    from facerec.training.callbacks import (
        AtomicCheckpointIO,
        ResumeLoaderState,
        VerificationSummary,
        read_resume,
    )
    from facerec.training.curves import TrainingCurves
    from facerec.training.module import FaceRecognitionModule
    from facerec.training.refresh import data_callbacks

    class FacerecCLI(lightning_compat.cli_base()):  # type: ignore[misc]
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            # what the model needs of the data (batch_size: the lr scaling rule's, P·K for P×K)
            parser.link_arguments("data.image_size", "model.backbone.init_args.input_size")
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.batch_size", "model.batch_size", apply_on="instantiate")
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.add_argument(
                "--checkpoint_every_n_steps",
                type=int,
                default=500,
                help="also write checkpoints/last.ckpt every N training steps (0: off), so an "
                "interrupted fit continues with --ckpt_path last",
            )
            parser.set_defaults(
                {
                    "checkpoint.monitor": "val/acc",
                    "checkpoint.mode": "max",
                    "checkpoint.save_last": True,
                    "checkpoint.filename": "epoch{epoch:03d}-step{step:06d}-acc{val/acc:.4f}",
                    "checkpoint.auto_insert_metric_name": False,
                    # both checkpoint callbacks write the one last.ckpt (no last-v1.ckpt)
                    "checkpoint.enable_version_counter": False,
                }
            )

        def filter_callbacks(self, config, callbacks):
            if config.get("enable_checkpointing") is False:  # drop our `checkpoint` callback
                callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
            return callbacks

        def before_ckpt_path(self, path: str | None) -> dict | None:
            # a safe read of --ckpt_path FILE (one line if damaged), returned to be merged
            sub = self.config.get("subcommand")
            if not path or not sub:
                return None
            config = self.config[sub]
            file = _last_checkpoint(config) if path == "last" and sub == "fit" else path
            if not (file and os.path.isfile(file)):
                return None
            ckpt = read_resume(file)
            if sub == "fit":  # the model options must be the checkpoint's
                model = config.get("model")
                given = model.as_dict() if hasattr(model, "as_dict") else dict(model or {})
                check_resume_options(ckpt.get("hyper_parameters") or {}, given, file)
            return ckpt if file == path else None

        def ckpt_hyperparameters(self, hparams: dict) -> dict:
            from facerec.training.optim import upgrade_flat_keys  # a checkpoint before model.optim

            return upgrade_flat_keys(hparams)

        def init_parser(self, **kwargs) -> LightningArgumentParser:
            parser = super().init_parser(**kwargs)
            parser.exit_on_error = False  # errors reach main() as one line, not a usage page
            return parser

        def instantiate_trainer(self, **kwargs):
            # keep the callbacks and plugins of the config (--trainer.callbacks+=...), add ours
            config = self._get(self.config_init, "trainer", default={})
            callbacks = _as_list(config.get("callbacks")) + _as_list(kwargs.pop("callbacks", None))
            callbacks.append(VerificationSummary())
            if not any(isinstance(c, TrainingCurves) for c in callbacks):
                callbacks.append(TrainingCurves())  # curves.png in the run folder
            if config.get("logger") is not False:
                callbacks.append(LearningRateMonitor(logging_interval="step"))  # needs a logger
            plugins = _as_list(config.get("plugins"))
            if not any(isinstance(p, AtomicCheckpointIO) for p in plugins):
                plugins.append(AtomicCheckpointIO())
            trainer = super().instantiate_trainer(callbacks=callbacks, plugins=plugins, **kwargs)
            if self.subcommand == "fit":  # refuse an unusable run folder before any training
                _claim_run_folder(trainer.default_root_dir, self.model)
            # one checkpoint folder per run folder (not per logger version): `--ckpt_path last`
            ckdir = os.path.join(trainer.default_root_dir, "checkpoints")
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                    cb.dirpath = ckdir
            every = self._get(self.config, "checkpoint_every_n_steps", default=0)
            if every and self.subcommand == "fit" and trainer.checkpoint_callbacks:
                # last.ckpt every N steps, so a killed fit resumes losing at most N steps
                trainer.callbacks.append(
                    ModelCheckpoint(
                        dirpath=ckdir,
                        every_n_train_steps=every,
                        save_top_k=0,
                        save_last=True,
                        enable_version_counter=False,
                    )
                )
            trainer.callbacks.append(ResumeLoaderState())  # mid-epoch resume of the samplers
            trainer.callbacks += data_callbacks(self.datamodule)  # the sampler's mining refresh
            self.model.attach_data(self.datamodule)  # pairs and names: not known at link time
            return trainer

    return FacerecCLI, FaceRecognitionModule, FaceDataModule


def _as_list(value) -> list:
    """A config's list, single value or None as a new list."""
    value = value or []
    return list(value) if isinstance(value, list | tuple) else [value]


class _DropLightningTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def _quiet_lightning_notices() -> None:
    """Hide Lightning notices that say nothing about the user's run (adverts, deprecations
    inside Lightning, notices about what facerec does by design)."""
    warnings.filterwarnings("ignore", message="Starting from v1.9.0, `tensorboardX`")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings(
        "ignore", message="You have overridden `on_after_batch_transfer` in `LightningModule` but"
    )
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val/")
    warnings.filterwarnings("ignore", message=r'.*ckpt_path="last"\) is set, but there is no last')
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTip) for f in log.filters):
            log.addFilter(_DropLightningTip())


#: Run-folder locks held by this process's fits (released when the fit returns or fails).
_HELD_LOCKS: list = []


def _last_checkpoint(config) -> str | None:
    """``--ckpt_path last`` of a fit: the run folder's ``checkpoints/last.ckpt``, or None (said
    in one line) when there is none yet, so one script both starts and continues a run."""
    from facerec.training.callbacks import RunLock

    dirpath = (config.get("checkpoint") or {}).get("dirpath")
    root = (config.get("trainer") or {}).get("default_root_dir") or "runs"
    last = os.path.join(dirpath or os.path.join(root, "checkpoints"), "last.ckpt")
    if os.path.isfile(last):
        return last
    if RunLock.launching_process():
        note = f"facerec: --ckpt_path last: there is no {last} yet; starting a new run"
        print(note, file=sys.stderr)
    return None


#: Model options a resume takes from the checkpoint without comparing them.
_RESUME_IGNORED = ("_instantiator", "num_classes", "batch_size", "init_from")


def _differences(saved, given, key: str):
    """Dotted keys (with both values) where ``given`` differs from ``saved``, in order."""
    if isinstance(saved, dict) and isinstance(given, dict):
        for k in saved:
            if k in given:
                yield from _differences(saved[k], given[k], f"{key}.{k}" if key else k)
        return
    norm = lambda v: list(v) if isinstance(v, tuple | list) else v  # noqa: E731
    if norm(saved) != norm(given):
        yield key, saved, given


def _is_architecture(key: str, was, now) -> bool:
    """Whether a differing model option changes the checkpoint's tensors: the backbone, a class,
    or whether a head, CenterLoss, metric loss or distillation is there at all."""
    if key.startswith("backbone") or key.endswith("class_path"):
        return True
    optional = key in ("head", "center_loss", "metric_loss", "distill")
    return optional and (was is None) != (now is None)


def check_resume_options(saved: dict, given: dict, path: str) -> None:
    """Refuse a resume whose model options change the checkpoint's architecture (naming the
    first); warn of any other difference, since the checkpoint's options are the ones used."""
    saved = {k: v for k, v in saved.items() if k not in _RESUME_IGNORED}
    others = []
    for key, was, now in _differences(saved, given, ""):
        if _is_architecture(key, was, now):
            raise ConfigError(
                f"--ckpt_path {path} holds a model with model.{key}={was!r} but this run sets "
                f"{now!r}; a resumed fit continues the checkpoint's model: drop the change, or "
                "start a new run from its weights with --model.init_from"
            )
        others.append(f"model.{key}={now!r} (the checkpoint's {was!r} is used)")
    if others:
        warnings.warn(
            f"--ckpt_path {path}: a resumed fit keeps the checkpoint's model options, so "
            f"{'; '.join(others)}",
            stacklevel=2,
        )


def _claim_run_folder(root: str, model) -> None:
    """Refuse a run folder that is not writable, has no room for checkpoints or is in use."""
    from facerec.io import check_free_space, check_output
    from facerec.training.callbacks import RunLock

    flag = "--trainer.default_root_dir"
    check_output(root, flag, kind="folder")
    # last.ckpt and a best checkpoint: weights and optimiser state (SGD momentum, Adam's two)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    check_free_space(os.path.join(root, "checkpoints", "last.ckpt"), 2 * 3 * weights, flag)
    if RunLock.launching_process():
        _HELD_LOCKS.append(RunLock(root).acquire())


def run_lightning(argv: list[str]) -> int:
    """Run fit / validate / test; configuration errors are raised as :class:`ConfigError`."""
    from jsonargparse import ArgumentError

    cli_cls, module_cls, dm_cls = _cli_class()
    _quiet_lightning_notices()
    try:
        cli_cls(
            module_cls,
            dm_cls,
            args=None if argv == sys.argv[1:] else argv,  # LightningCLI warns if they differ
            save_config_kwargs={"overwrite": True},
            # the train batch samplers shard by rank themselves: no DistributedSampler
            trainer_defaults={"default_root_dir": "runs", "use_distributed_sampler": False},
            parser_kwargs={"prog": "facerec"},
            seed_everything_default=0,
            auto_configure_optimizers=False,
        )
    except ArgumentError as e:
        msg = " ".join(str(e).split())
        raise ConfigError(_renamed_key(msg) or f"{msg} (see facerec {argv[0]} --help)") from None
    finally:
        while _HELD_LOCKS:
            _HELD_LOCKS.pop().release()
    return 0


def _renamed_key(message: str) -> str | None:
    """One line naming the new key when a parse error is about a key renamed by issue 23 (flat
    optimiser keys, the old ``data.sampler`` strings and groups), else None."""
    from facerec.data.datamodule import OLD_SAMPLER_KEYS, old_sampler_message
    from facerec.training.optim import FLAT_KEYS

    def mentions(key: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message) is not None

    for old, new in FLAT_KEYS.items():  # jsonargparse: "does not accept option 'model.lr'"
        if mentions(f"model.{old}"):
            return f"model.{old} is no longer a key; write model.optim.{new} (issue 23 moved it)"
    given = re.search(r'Parser key "data\.sampler":.*Given value: (\w+)', message)
    if given and (line := old_sampler_message(given.group(1))):
        return line  # data.sampler: pk
    for old in OLD_SAMPLER_KEYS:  # --data.pk.p=4; a config's data: {pk: {p: 4}}
        short = re.escape(old.removeprefix("data."))
        group = rf"Group 'data' does not accept option '{short}(?![\w])"
        if mentions(old) or re.search(group, message):
            return old_sampler_message(old)
    return None


def _one_line(error: FacerecError) -> str:
    """The message of ``error``, without the worker traceback of one raised in a DataLoader."""
    text = str(error)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        return last.split(f"{type(error).__name__}: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``facerec`` console script and ``python -m facerec``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            tools = "\n".join(f"  {k:<13} {v[1]}" for k, v in TOOL_COMMANDS.items())
            print(HELP.format(tools=tools))
            return 0 if argv else 2
        if argv[0] in ("-V", "--version"):
            print(f"facerec {__version__}")
            return 0
        if argv[0] in TOOL_COMMANDS:
            tool = importlib.import_module(TOOL_COMMANDS[argv[0]][0])
            status = int(tool.main(argv[1:]) or 0)
            sys.stdout.flush()  # a reader that left raises here, not at exit
            return status
        if argv[0] in LIGHTNING_COMMANDS:
            from facerec.recipes import resolve_config_args  # a bare recipe name works anywhere

            resolved = argv[:1] + resolve_config_args(argv[1:])
            if argv == sys.argv[1:]:  # LightningCLI checks its args against sys.argv
                sys.argv[1:] = resolved
            return run_lightning(resolved)
        print(
            f"facerec: error: unknown command {argv[0]!r}; expected one of "
            f"{', '.join(LIGHTNING_COMMANDS + tuple(TOOL_COMMANDS))} (see facerec --help)",
            file=sys.stderr,
        )
        return 2
    except FacerecError as e:
        print(f"facerec: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facerec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `facerec recipes | head`: the reader closed the pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
