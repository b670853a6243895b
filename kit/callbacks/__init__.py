"""Lightning callbacks: what a run logs and keeps (sample grids, layer weights, suite scores, the final
checkpoint, the hyperparameter summary) and the writer of `python -m kit predict`'s images.

Callbacks ask the task what it can do (`DiffusionTask.capabilities`, `layer_weights()`), never its type."""

from kit.callbacks.final_checkpoint import FinalCheckpoint
from kit.callbacks.monitors import LayerWeightLogger, PredictionWriter, SampleGrid, SuiteEvaluation
from kit.callbacks.summary import RunSummary

__all__ = ["FinalCheckpoint", "LayerWeightLogger", "PredictionWriter", "RunSummary", "SampleGrid", "SuiteEvaluation"]
