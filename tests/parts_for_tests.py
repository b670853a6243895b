"""Parts used only by the tests, importable by class_path from recipes built in tests."""

from kit.fusion.base import FusionHead


class PooledOnlyHead(FusionHead):
    """A head that provides only a pooled vector (no tokens)."""

    provides = frozenset({"pooled"})

    def forward(self, enc):
        raise NotImplementedError("never called: the pairing is refused at build time")


def remote_code_model_folder(tmp_path):
    """A copy of the random shapes VLM whose config maps every Auto class to a local Python file that,
    if ever imported, leaves a marker file. Returns `(folder, marker)`."""
    import json
    import shutil

    from kit.encoders import resolve_model_path

    folder = tmp_path / "remote_code_model"
    shutil.copytree(resolve_model_path("kit:shapes-vlm-random"), folder)
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import Qwen2VLForConditionalGeneration as Evil\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Evil", "AutoModelForImageTextToText": "evil.Evil", "AutoModelForCausalLM": "evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker
