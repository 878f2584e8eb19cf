"""The training layer: the LightningModule (``module``), its callbacks (``callbacks``: resume,
summary, checkpoint I/O, the run lock; ``refresh``: mining refresh; ``curves``: training
curves), the optimiser and schedule (``optim``), distillation and fine-tuning."""
