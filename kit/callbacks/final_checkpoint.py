"""`FinalCheckpoint`: Lightning's `ModelCheckpoint` whose `last.ckpt` is the end of training.

Lightning's `save_last` copies the last *triggered* checkpoint: a 3,000-step run saving every 1,300
steps ends with `last.ckpt` at step 2,600, and its last 400 steps are not on disk. (A run shorter
than the interval does get a `last.ckpt` at its end, which makes the gap easy to miss.) The kit's
benchmarks, `kit evaluate` and `init_from` read `last.ckpt` as the trained model, so the recipes use
this callback: at the end of training it writes `last.ckpt` (with `save_last`) or the top-k
checkpoint (without) for the final step whenever no checkpoint was saved at that step. It calls
`ModelCheckpoint`'s own saving methods (private in Lightning 2.6, the pinned version); the tests in
`tests/test_reliability.py` fail if an upgrade changes them.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class FinalCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` (same arguments) that also checkpoints the final step at the end of training."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0 and self._last_global_step_saved != trainer.global_step and not trainer.sanity_checking:
            candidates = self._monitor_candidates(trainer)
            if self.save_last:
                self._save_last_checkpoint(trainer, candidates)
            else:
                self._save_topk_checkpoint(trainer, candidates)
            self._last_global_step_saved = trainer.global_step
        super().on_train_end(trainer, pl_module)
