"""Every use of PyTorch Lightning internals, in one place (written against Lightning 2.6).

Each function says why no public way serves; on a Lightning upgrade check this module first.
"""

from __future__ import annotations

import os
from typing import Any


def given_hyperparameters() -> Any:
    """The config the module is being built from by LightningCLI (or :func:`from_config`), else
    None. Why: only this private context says a plain-data config exists to store instead of
    objects, which keeps checkpoints loadable with ``weights_only=True``."""
    from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters

    return _given_hyperparameters.get()


def from_config(cls: type, config: dict[str, Any]) -> Any:
    """Build ``cls`` from a class_path/init_args ``config`` stored as its hyper-parameters, as
    LightningCLI does. Why: ``instantiate_module`` does not set LightningCLI's context."""
    from pytorch_lightning.cli import instantiate_module
    from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters_context

    instantiator = "pytorch_lightning.cli.instantiate_module"
    with _given_hyperparameters_context(hparams=config, instantiator=instantiator):
        return instantiate_module(cls, config)


def attached_trainer(module: Any) -> Any:
    """The module's Trainer, or None when it has none. Why: ``LightningModule.trainer`` raises
    when no Trainer is attached; ``_trainer`` is the attribute behind it."""
    return getattr(module, "_trainer", None)


def batches_processed(trainer: Any) -> int:
    """Batches of the current epoch the fit loop has trained: the count Lightning resumes from.
    Why: the loop's ``batch_progress`` is the only counter that matches it."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def restore_pending_loader_state(trainer: Any) -> None:
    """Hand a checkpoint's train-loader position to the loader now, if Lightning has not.

    Why (Lightning issue #20550): when ``configure_optimizers`` reads
    ``trainer.estimated_stepping_batches`` the loader is set up before the restore and its state
    stays pending; this loads it and restarts the iterator, as the proposed upstream fix does.
    """
    loop = trainer.fit_loop
    pending = getattr(loop, "_combined_loader_states_to_load", None)
    if not pending or getattr(loop, "_combined_loader", None) is None or not loop.restarting:
        return
    loop._load_combined_loader_states()
    fetcher = getattr(loop, "_data_fetcher", None)
    if fetcher is not None:
        iter(fetcher)  # the old iterator (and its prefetched batch) predates the restore


def cli_base() -> type:
    """A LightningCLI with public hooks: ``filter_callbacks(config, callbacks)`` sees the
    callbacks of ``--checkpoint.*`` before the Trainer is made; ``before_ckpt_path(path)`` sees
    ``--ckpt_path`` before its hyper-parameters are merged (and may return the dict it read);
    ``ckpt_hyperparameters(hparams)`` may update an older layout before the merge. Why: no hook
    surrounds ``_instantiate_trainer`` and ``_parse_ckpt_path``."""
    from pytorch_lightning.cli import LightningCLI

    class CompatCLI(LightningCLI):
        def filter_callbacks(self, config: dict[str, Any], callbacks: list) -> list:
            return callbacks

        def before_ckpt_path(self, path: str | None) -> dict[str, Any] | None:
            return None

        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
            return super()._instantiate_trainer(config, self.filter_callbacks(config, callbacks))

        def ckpt_hyperparameters(self, hparams: dict[str, Any]) -> dict[str, Any]:
            return hparams

        def _parse_ckpt_path(self) -> None:
            # LightningCLI._parse_ckpt_path (2.6), with the two hooks
            sub = self.config.get("subcommand")
            path = self.config[sub].get("ckpt_path") if sub else None
            ckpt = self.before_ckpt_path(path)
            if not path or not os.path.isfile(path):
                return
            if ckpt is None:  # the hook did not read the file already
                import torch

                ckpt = torch.load(path, weights_only=True, map_location="cpu")
            hparams = self.ckpt_hyperparameters(dict(ckpt.get("hyper_parameters") or {}))
            hparams.pop("_instantiator", None)
            if not hparams:
                return
            if "_class_path" in hparams:
                hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
            self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    return CompatCLI
