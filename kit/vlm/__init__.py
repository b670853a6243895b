"""The shapes VLM: a tiny Qwen2-VL trained on the shapes world (tasks, data, training, scoring)."""

from kit.vlm.data import VLMTaskBatches, VLMTaskData
from kit.vlm.module import ShapesVLMPretraining
from kit.vlm.tasks import EDIT_SYSTEM_PROMPT, REWRITE_SYSTEM_PROMPT, TASKS, Conversation, make_conversation

__all__ = ["EDIT_SYSTEM_PROMPT", "REWRITE_SYSTEM_PROMPT", "TASKS", "Conversation", "ShapesVLMPretraining", "VLMTaskBatches", "VLMTaskData", "make_conversation"]
