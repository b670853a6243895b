"""The feature cache: a frozen encoder's outputs computed once, stored as safetensors shards.

A cache is a directory:

    manifest.json          format version, the encoder's fingerprint, storage dtype, shard list
    shard_00000.safetensors   hidden (T, N, D), kinds (T,), offsets (K+1,): K entries packed along tokens
    shard_00000.json          the K keys, in order

A key is a prompt, plus the digests of its reference images' pixels when it has any
(`cache_key`: the same image as a PIL image, a uint8 array or a [-1, 1] tensor has one key, a
changed pixel another). Entries keep every
token (system and instruction ones too), so any head's choice of kinds can read them.
The fingerprint (`FrozenEncoder.fingerprint`: model, revision, weights, dtype, taps,
template, rewrite settings) is written once; opening a cache for an encoder with another
fingerprint fails with both shown. Writing is resumable: shards are written whole and the
manifest is replaced atomically after each, so an interrupted run loses at most one shard.

Reading is lazy: an entry is sliced out of its memory-mapped shard (`safe_open(...).get_slice`),
so a process (every data-loader worker, every rank) holds the entries it reads, never a whole
shard: a real VLM's shard is several GB. Each process opens its own handles.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from kit.types import EncoderOutput

FORMAT = 1
CacheItem = str | tuple[str, Sequence]
"""What a cache encodes: a prompt, or `(prompt, reference images)`."""


def cache_key(prompt: str, images: Sequence = ()) -> str:
    """The key of a prompt with its reference images: the prompt alone when there are none, else the
    prompt and a digest of each image's RGB pixels and size (in order)."""
    if not images:
        return prompt
    from kit.encoders.chat import to_pil  # the encoder's own conversion: what it would read

    digests = []
    for image in images:
        pil = to_pil(image)
        digests.append(hashlib.sha256(pil.tobytes() + repr(pil.size).encode()).hexdigest()[:16])
    return f"{prompt}\x1f{'|'.join(digests)}"


def parse_item(item: CacheItem) -> tuple[str, str, list]:
    """`(key, prompt, images)` of a cache item."""
    prompt, images = (item, []) if isinstance(item, str) else (item[0], list(item[1]))
    return cache_key(prompt, images), prompt, images


class CacheMismatchError(ValueError):
    """A cache built by another encoder configuration than the one asking for it."""


def _describe_difference(have: dict, want: dict) -> str:
    keys = sorted(set(have) | set(want))
    return "; ".join(f"{k}: cache has {have.get(k)!r}, recipe has {want.get(k)!r}" for k in keys if have.get(k) != want.get(k))


def check_fingerprint(path: str | Path, have: dict | None, want: dict | None) -> None:
    """Raise `CacheMismatchError` (both fingerprints, what differs, how to rebuild) when a cache at `path`
    built with fingerprint `have` is read by an encoder whose fingerprint is `want`."""
    if have == want:
        return
    raise CacheMismatchError(
        f"the feature cache {path} was built by another encoder configuration ({_describe_difference(have or {}, want or {})}).\n"
        f"  cache fingerprint:  {json.dumps(have, sort_keys=True)}\n"
        f"  recipe fingerprint: {json.dumps(want, sort_keys=True)}\n"
        "Rebuild it with `python -m kit cache --config RECIPE --out DIR` or point the recipe at a matching cache."
    )


class FeatureCache:
    """Read (and append to) a feature cache directory.

    Args:
        path: the cache directory.
        fingerprint: the fingerprint of the encoder that will read it; a cache with another one is refused.
        storage_dtype: dtype of stored hidden states ('bfloat16', 'float16' or 'float32'), for new caches.
    """

    def __init__(self, path: str | Path, fingerprint: dict | None = None, storage_dtype: str = "bfloat16") -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if manifest.is_file():
            self.manifest = json.loads(manifest.read_text())
            if self.manifest.get("format") != FORMAT:
                raise CacheMismatchError(f"cache {self.path} has format {self.manifest.get('format')}, this kit reads format {FORMAT}: rebuild it")
            if fingerprint is not None:
                check_fingerprint(self.path, self.manifest["fingerprint"], fingerprint)
        elif fingerprint is None:
            raise FileNotFoundError(
                f"no feature cache at {self.path} (no manifest.json); build one with `python -m kit cache --config RECIPE --out {self.path}`"
            )
        else:
            self.manifest = {"format": FORMAT, "fingerprint": fingerprint, "storage_dtype": storage_dtype, "shards": [], "items": 0}
        self.index: dict[str, tuple[int, int]] = {}
        for s, shard in enumerate(self.manifest["shards"]):
            for i, key in enumerate(json.loads((self.path / shard["keys"]).read_text())):
                self.index[key] = (s, i)
        self._open: dict[int, object] = {}  # shard -> safe_open handle of this process
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        """Pickled (a spawned worker, a rank) without the open handles; each process opens its own."""
        return {**self.__dict__, "_open": {}, "_pid": None}

    @property
    def fingerprint(self) -> dict:
        return self.manifest["fingerprint"]

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def _handle(self, s: int):
        """Shard `s` opened for lazy reads (memory-mapped), one handle per shard per process."""
        pid = os.getpid()
        if self._pid != pid:  # a forked worker does not reuse its parent's handles
            self._open, self._pid = {}, pid
        if s not in self._open:
            self._open[s] = safe_open(self.path / self.manifest["shards"][s]["file"], framework="pt")
        return self._open[s]

    def get(self, key: str) -> tuple[Tensor, Tensor]:
        """The entry of `key`: hidden states `(N, S, D)` and kinds `(S,)`, read from its shard alone."""
        try:
            s, i = self.index[key]
        except KeyError:
            raise KeyError(f"{key!r} is not in the feature cache {self.path} ({len(self)} entries); rebuild the cache for this data") from None
        f = self._handle(s)
        a, b = (int(v) for v in f.get_slice("offsets")[i : i + 2])
        return f.get_slice("hidden")[a:b].transpose(0, 1), f.get_slice("kinds")[a:b]

    def add_shard(self, keys: Sequence[str], entries: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Write one shard of entries (hidden `(N, S, D)`, kinds `(S,)`) and update the manifest atomically."""
        s = len(self.manifest["shards"])
        name = f"shard_{s:05d}"
        lengths = torch.tensor([0] + [k.shape[0] for _, k in entries])
        dtype = getattr(torch, self.manifest["storage_dtype"])
        tensors = {
            "hidden": torch.cat([h.transpose(0, 1) for h, _ in entries]).to(dtype).contiguous(),  # (T, N, D)
            "kinds": torch.cat([k for _, k in entries]).to(torch.uint8),
            "offsets": lengths.cumsum(0),
        }
        self.path.mkdir(parents=True, exist_ok=True)
        save_file(tensors, self.path / f"{name}.safetensors")
        (self.path / f"{name}.json").write_text(json.dumps(list(keys)))
        self.manifest["shards"].append({"file": f"{name}.safetensors", "keys": f"{name}.json", "entries": len(keys)})
        for i, key in enumerate(keys):
            self.index[key] = (s, i)
        self._write_manifest()

    def record(self, **info) -> None:
        """Note facts about the cached data in the manifest (e.g. how many training items it covers)."""
        self.manifest.setdefault("data", {}).update(info)
        self._write_manifest()

    def _write_manifest(self) -> None:
        tmp = self.path / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2))
        os.replace(tmp, self.path / "manifest.json")

    def batch(self, keys: Sequence[str], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> EncoderOutput:
        """Entries of `keys`, right-padded into an `EncoderOutput` `(B, N, S, D)`."""
        items = [self.get(k) for k in keys]
        return collate_entries(items, device, dtype)


def collate_entries(items: Sequence[tuple[Tensor, Tensor]], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> EncoderOutput:
    """Entries (hidden `(N, S_i, D)`, kinds `(S_i,)`) -> a right-padded `EncoderOutput`."""
    n, _, d = items[0][0].shape
    length = max(k.shape[0] for _, k in items)
    hidden = torch.zeros(len(items), n, length, d, dtype=dtype)
    kinds = torch.zeros(len(items), length, dtype=torch.long)
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for i, (h, k) in enumerate(items):
        s = k.shape[0]
        hidden[i, :, :s] = h.to(dtype)
        kinds[i, :s] = k.long()
        mask[i, :s] = True
    return EncoderOutput(hidden.to(device), mask.to(device), kinds.to(device))


def build_cache(
    encoder,
    keys: Iterable[CacheItem],
    out: str | Path,
    *,
    shard_size: int = 2048,
    batch_size: int = 64,
    storage_dtype: str = "bfloat16",
    log=print,
    progress: bool = False,
) -> FeatureCache:
    """Encode every item not yet in the cache at `out` (resumable) and write shards.

    Args:
        encoder: a `FrozenEncoder` (its fingerprint keys the cache).
        keys: the prompts to encode, or `(prompt, reference images)` pairs; duplicates (by `cache_key`) are encoded once.
        out: the cache directory (created, or resumed when it holds a cache of the same fingerprint).
        shard_size: entries per shard.
        batch_size: prompts per encoder batch.
        storage_dtype: dtype of the stored hidden states.
        log: where progress lines go.
        progress: show a progress bar over the prompts to encode (stderr).
    """
    cache = FeatureCache(out, encoder.fingerprint(), storage_dtype)
    todo, seen = [], set(cache.index)
    for item in keys:
        key, prompt, images = parse_item(item)
        if key not in seen:
            seen.add(key)
            todo.append((key, prompt, images))
    if len(cache):
        log(f"resuming: {len(cache)} entries already cached, {len(todo)} to encode")
    with tqdm(total=len(todo), desc="encoding", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(todo), shard_size):
            chunk = todo[start : start + shard_size]
            entries = []
            for b in range(0, len(chunk), batch_size):
                _, prompts, images = zip(*chunk[b : b + batch_size])
                out_b = encoder(list(prompts), list(images)) if any(images) else encoder(list(prompts))
                for i in range(out_b.hidden_states.shape[0]):
                    m = out_b.mask[i]
                    entries.append((out_b.hidden_states[i][:, m].cpu(), out_b.kinds[i][m].cpu()))
                bar.update(out_b.hidden_states.shape[0])
            cache.add_shard([key for key, _, _ in chunk], entries)
            log(f"shard {len(cache.manifest['shards']) - 1}: {len(chunk)} entries ({len(cache)} cached)")
    return cache
