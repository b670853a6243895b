"""The shapes VLM: a tiny Qwen2-VL trained on the shapes world (tasks, data, scoring; its training module is `kit.pretrain.ShapesVLMPretraining`)."""

from kit.vlm.data import VLMTaskBatches, VLMTaskData
from kit.vlm.tasks import EDIT_SYSTEM_PROMPT, REWRITE_SYSTEM_PROMPT, TASKS, Conversation, make_conversation

__all__ = ["EDIT_SYSTEM_PROMPT", "REWRITE_SYSTEM_PROMPT", "TASKS", "Conversation", "VLMTaskBatches", "VLMTaskData", "make_conversation"]
