"""A checkpoint is data: crafted checkpoints are refused before anything they name is built or run."""

import shutil
from pathlib import Path

import pytest
import torch

from kit.cli import main, run_cli
from kit.encoders import resolve_model_path
from tests.parts_for_tests import remote_code_model_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A smoke-sized checkpoint written by `kit fit`."""
    root = tmp_path_factory.mktemp("fit")
    run_cli(["fit", "-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / "recipes/smoke.yaml"), f"--trainer.logger.init_args.save_dir={root}"])
    return next(root.glob("*/version_0/checkpoints/last.ckpt"))


def crafted(trained: Path, tmp_path: Path, edit) -> str:
    """A copy of the checkpoint whose recorded config `edit(hparams)` changed."""
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    edit(checkpoint["hyper_parameters"])
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    return str(path)


def sample(ckpt: str, tmp_path: Path, *extra: str) -> int:
    return main(["sample", "--ckpt", ckpt, "--prompt", "a red circle", "--num", "1", "--steps", "1", "--out", str(tmp_path / "g.png"), *extra])


@pytest.mark.slow
def test_a_checkpoint_that_points_at_remote_code_is_refused_and_nothing_runs(trained, tmp_path, capsys):
    folder, marker = remote_code_model_folder(tmp_path)

    def edit(hp):
        hp["encoder"]["init_args"].update(model=str(folder), trust_remote_code=True)

    ckpt = crafted(trained, tmp_path, edit)
    assert sample(ckpt, tmp_path) == 2
    err = capsys.readouterr().err
    assert "not shipped with the kit" in err and "--encoder-model" in err and err.count("\n") == 1, err
    assert sample(ckpt, tmp_path, "--encoder-model", str(folder)) == 2, "naming the folder does not also accept trust_remote_code"
    assert "trust_remote_code" in capsys.readouterr().err
    assert not marker.exists(), "the folder's Python file ran"


@pytest.mark.slow
def test_a_recorded_encoder_path_needs_the_users_word(trained, tmp_path, capsys):
    folder = tmp_path / "vlm"
    shutil.copytree(resolve_model_path("kit:shapes-vlm-random"), folder)
    ckpt = crafted(trained, tmp_path, lambda hp: hp["encoder"]["init_args"].update(model=str(folder)))
    assert sample(ckpt, tmp_path) == 2
    assert f"--encoder-model {folder}" in capsys.readouterr().err
    assert sample(ckpt, tmp_path, "--encoder-model", str(folder)) == 0, "the user named it"
    assert sample(ckpt, tmp_path, "--trust-checkpoint") == 0, "the user vouches for the file"
    assert sample(str(trained), tmp_path) == 0, "a kit: encoder loads without a word"


@pytest.mark.parametrize("where", ["objective", "sampler"])
def test_a_class_outside_the_kit_torch_optim_and_lightning_is_refused(trained, tmp_path, capsys, where):
    ckpt = crafted(trained, tmp_path, lambda hp: hp[where].update(class_path="subprocess.Popen", init_args={"args": ["true"]}))
    assert sample(ckpt, tmp_path, "--trust-checkpoint") == 2, "trusting the encoder does not widen the classes"
    assert f"names the class 'subprocess.Popen' at {where}.class_path" in capsys.readouterr().err


def test_unreadable_checkpoints_get_one_line(trained, tmp_path, capsys):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(trained.read_bytes()[:2000])
    notckpt = tmp_path / "weights.ckpt"
    torch.save({"w": torch.zeros(2)}, notckpt)
    for path, message in [
        (empty, "is empty (0 bytes)"),
        (truncated, "cannot be read (truncated or not a checkpoint)"),
        (notckpt, "is not a Lightning checkpoint"),
        (trained.parent, "is a directory: pass one of"),
    ]:
        assert sample(str(path), tmp_path) == 2, path
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda hp: hp.update(encoder="{class_path: kit.encoders.FrozenEncoder, init_args: {model: evil/repo, trust_remote_code: true}}"),
            "a part must be a class_path block",
        ),
        (lambda hp: hp.update(optimizer="os.system"), "a part must be a class_path block"),
        (lambda hp: hp["encoder"]["init_args"].update(system_prompt="{class_path: subprocess.Popen}"), "would be read as code to import"),
        (lambda hp: hp["encoder"]["init_args"].update(model="pkg:os"), "not shipped with the kit"),
        (lambda hp: hp["encoder"]["init_args"].update(model="kit:../../../tmp/x"), "not shipped with the kit"),
    ],
    ids=["inline-yaml-encoder", "import-path-optimizer", "inline-yaml-leaf", "pkg-any-module", "kit-path-traversal"],
)
def test_parts_written_as_strings_and_unlisted_packages_are_refused(trained, tmp_path, capsys, edit, message):
    ckpt = crafted(trained, tmp_path, edit)
    assert sample(ckpt, tmp_path) == 2
    assert message in capsys.readouterr().err


def test_legacy_hyperparameter_keys_are_refused(trained, tmp_path, capsys):
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    checkpoint["module_arguments"] = {"encoder": {"class_path": "kit.encoders.FrozenEncoder", "init_args": {"model": "evil/repo"}}}
    path = tmp_path / "legacy.ckpt"
    torch.save(checkpoint, path)
    assert sample(str(path), tmp_path) == 2
    assert "legacy hyperparameter keys ['module_arguments']" in capsys.readouterr().err
