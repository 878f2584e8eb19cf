"""Every use of PyTorch Lightning internals, in one place (written against Lightning 2.6).

Lightning has no public way for any of these; each function says what it needs and why. On a
Lightning upgrade check this module first: tests/test_module.py, test_resume.py, test_cli.py
and tests/data/test_samplers.py exercise every function.
"""

from __future__ import annotations

import os
from typing import Any


def given_hyperparameters() -> Any:
    """The config the module is being built from by LightningCLI (or :func:`from_config`), else
    None. Why: ``save_hyperparameters`` stores init arguments as objects; only this private
    context variable says that a plain-data config (class_path/init_args) exists to store
    instead, which keeps checkpoints loadable with ``weights_only=True``."""
    from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters

    return _given_hyperparameters.get()


def from_config(cls: type, config: dict[str, Any]) -> Any:
    """Build a LightningModule ``cls`` from a class_path/init_args ``config`` so that it stores
    ``config`` as its hyper-parameters, as LightningCLI does. Why: ``instantiate_module`` (the
    public builder) does not set the context LightningCLI sets around it."""
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
    """Batches of the current epoch the fit loop has trained: the count Lightning resumes from
    (a checkpoint written in ``on_train_batch_end`` of batch i restarts at i + 1). Why: the
    loop's ``batch_progress`` is the only counter that matches Lightning's own resume point."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def restore_pending_loader_state(trainer: Any) -> None:
    """Hand a checkpoint's train-loader position to the loader now, if Lightning has not.

    Why (Lightning issue #20550): Lightning loads stateful train loaders' states in
    ``FitLoop.setup_data``, but when ``configure_optimizers`` reads
    ``trainer.estimated_stepping_batches`` the loader is set up before the checkpoint is restored
    and the state stays pending. This loads it and restarts the loader's iterator, as the
    proposed upstream fix does; it does nothing when no state is pending.
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
    """A LightningCLI with public hooks in place of private methods:
    ``filter_callbacks(config, callbacks)`` sees the callbacks built from the parser's callback
    arguments (``--checkpoint.*``) before the Trainer is made; ``before_ckpt_path(path)`` sees
    ``--ckpt_path`` before its hyper-parameters are merged into the config (returning the
    checkpoint dict it read from ``path``, if it did, spares a second read); and
    ``ckpt_hyperparameters(hparams)`` may bring those of an older layout up to date before the
    merge. Why: LightningCLI builds those callbacks and reads that file inside
    ``_instantiate_trainer`` and ``_parse_ckpt_path``, with no hook around either."""
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
            # LightningCLI._parse_ckpt_path (2.6), with ckpt_hyperparameters between the load
            # and the merge: a checkpoint of an older layout is brought up to date first
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
