"""Every bad input of docs/reliability.md's table: a one-line error that says what is wrong, before any run folder.

Each row is `(id, argv, message)`: `python -m kit ARGV` must exit 2, print `message` on its first
`error:` line, and leave the run folder (`--trainer.logger.init_args.save_dir`) unmade. The
table in docs/reliability.md lists the same ids (checked below), so every row there is a test here.
Rows that are not a command line (a crafted checkpoint, a diverging run, DDP) have their own
tests, named in the table.
"""

import re
from pathlib import Path

import pytest
import torch

from kit.cli import main

REPO = Path(__file__).resolve().parent.parent
LAP, SMOKE = str(REPO / "recipes/lap.yaml"), str(REPO / "recipes/smoke.yaml")
M = "--model.init_args."
D = "--data.init_args."


def fit(*extra: str) -> list[str]:
    return ["fit", "-c", LAP, "-c", SMOKE, *extra]


ROWS = [
    ("unknown-head", fit(f"{M}fusion=PerceiverHead"), "known fusion heads: "),
    ("unknown-backbone", fit(f"{M}backbone=kit.backbones.HourglassDiT"), "known backbones: "),
    ("incompatible-parts", fit(f"{M}fusion=tests.parts_for_tests.PooledOnlyHead"), "provides ['pooled'] but backbone SingleStreamDiT consumes"),
    ("typo-key", fit(f"{M}fusion.init_args.layer_deph=2"), "unknown setting 'layer_deph' of kit.fusion.LAPHead; it takes: taps, width, layer_depth"),
    ("taps-beyond-depth", fit(f"{M}encoder.init_args.taps=[4,12]"), "has 8 layers"),
    ("lap-taps-not-returned", fit(f"{M}encoder.init_args.taps=last", f"{M}fusion.init_args.taps=[2]"), "are not all returned by the encoder"),
    ("size-not-multiple-of-patch", fit(f"{D}image_size=21", f"{M}autoencoder=null"), "is not a multiple of the patch size"),
    ("size-not-multiple-of-autoencoder", fit(f"{D}image_size=20"), "is not a multiple of the autoencoder's downsampling factor 8"),
    ("negative-batch-size", fit(f"{D}batch_size=-4"), "batch_size must be a positive integer, got -4"),
    ("negative-workers", fit(f"{D}num_workers=-1"), "num_workers must be 0"),
    ("empty-val-set", fit(f"{D}val_size=0"), "val_size must be at least 1"),
    ("negative-lr", fit(f"{M}optimizer.init_args.lr=-0.001"), "Invalid learning rate: -0.001"),
    ("unknown-caption-style", fit(f"{D}caption_styles=[detailed,poetic]"), "unknown caption styles ['poetic']"),
    ("negative-caption-curriculum", fit(f"{D}caption_curriculum=-1"), "caption_curriculum must be >= 0 items"),
    ("count-curriculum-order", fit(f"{D}count_curriculum=[[3200,1],[1600,2]]"), "stage ends must increase"),
    ("count-curriculum-objects", fit(f"{D}count_curriculum=[[3200,9]]"), "max_objects must be in 1.."),
    ("negative-terminal-steps", fit(f"{M}terminal_steps=-5"), "terminal_steps must be >= 0"),
    ("terminal-fraction-one", fit(f"{M}objective.init_args.terminal_fraction=1.0"), "terminal_fraction must be in [0, 1)"),
    ("unknown-prediction", fit(f"{M}objective.init_args.input_scaling=bogus"), "input_scaling"),
    ("unknown-shipped-model", fit(f"{M}encoder.init_args.model=kit:no-such-model"), "no shipped model 'kit:no-such-model'"),
    ("missing-model-folder", fit(f"{M}encoder.init_args.model=/no/such/folder"), "model folder '/no/such/folder' does not exist"),
    ("offline-hub-model", fit(f"{M}encoder.init_args.model=someone/absent-model"), "cannot load the encoder model 'someone/absent-model'"),
    (
        "echo-with-rewriter",
        fit(f"{M}encoder.init_args.echo=true", f"{M}encoder.init_args.rewriter=kit.encoders.verifi.Rewriter"),
        "echo and rewriter are exclusive",
    ),
    ("missing-feature-cache", fit(f"{D}feature_cache=/no/such/cache"), "/no/such/cache"),
    ("resume-missing-ckpt", fit("--ckpt_path=/no/such.ckpt"), "'/no/such.ckpt' does not exist"),
    ("sample-zero-images", ["sample", "--ckpt", "x.ckpt", "--prompt", "a red circle", "--num", "0"], "does not conform to restriction v>0"),
    ("sample-zero-steps", ["sample", "--ckpt", "x.ckpt", "--prompt", "a red circle", "--steps", "0"], "does not conform to restriction v>0"),
    ("sample-missing-ckpt", ["sample", "--ckpt", "/no/such.ckpt", "--prompt", "a red circle"], "'/no/such.ckpt' does not exist"),
    ("evaluate-unknown-suite", ["evaluate", "--suite", "nosuch"], "unknown --suite 'nosuch'; choose one of t2i, gt, noise"),
    ("evaluate-without-ckpt", ["evaluate", "--suite", "t2i"], "--suite t2i needs --ckpt"),
    ("evaluate-missing-prompt-file", ["evaluate", "--suite", "t2i", "--ckpt", "x.ckpt", "--prompts", "/no/such/prompts.txt"], "/no/such/prompts.txt"),
    ("unknown-verb", ["paint"], "unknown verb 'paint'"),
    ("init-from-missing-ckpt", fit(f"{M}init_from=/no/such.ckpt"), "'/no/such.ckpt' does not exist"),
    ("sample-missing-image", ["sample", "--ckpt", "x.ckpt", "--prompt", "make it blue", "--image", "/no/such.png"], "image '/no/such.png' does not exist"),
    ("evaluate-edit-without-ckpt", ["evaluate-edit"], "pass --ckpt CKPT"),
    (
        "not-a-streaming-dataset",
        fit("--data=kit.data.StreamingImageTextData", "--data.input_dir=/no/such/stream"),
        "is not a streaming dataset written by the kit",
    ),
    (
        "cache-unknown-format",
        ["cache", "-c", LAP, "--out", "/no/such/cache", "--format", "parquet"],
        "unknown --format 'parquet'; choose safetensors or litdata",
    ),
]

FILE_ROWS = [  # a file on disk that is not what it claims: made per test
    ("ckpt-directory", "is a directory"),
    ("ckpt-empty", "is empty (0 bytes)"),
    ("ckpt-truncated", "cannot be read (truncated or not a checkpoint)"),
    ("ckpt-not-lightning", "is not a Lightning checkpoint"),
    ("resume-truncated-ckpt", "cannot be read (truncated or not a checkpoint)"),
]

OTHER_TESTS = {  # table rows that are behaviours, each with its own test
    "crafted-ckpt-remote-code": "tests/test_checkpoint.py::test_a_checkpoint_that_points_at_remote_code_is_refused_and_nothing_runs",
    "crafted-ckpt-encoder-path": "tests/test_checkpoint.py::test_a_recorded_encoder_path_needs_the_users_word",
    "crafted-ckpt-class": "tests/test_checkpoint.py::test_a_class_outside_the_kit_torch_optim_and_lightning_is_refused",
    "crafted-ckpt-string-parts": "tests/test_checkpoint.py::test_parts_written_as_strings_and_unlisted_packages_are_refused",
    "crafted-ckpt-legacy-keys": "tests/test_checkpoint.py::test_legacy_hyperparameter_keys_are_refused",
    "resume-other-model": "tests/test_reliability.py::test_resuming_another_model_is_refused_before_any_run_folder",
    "nan-loss": "tests/test_reliability.py::test_a_diverging_run_stops_at_its_first_nonfinite_step_and_keeps_its_weights",
    "ddp-spawn": "tests/test_ddp.py::test_ddp_spawn_is_refused_with_the_reason",
    "zero-lr": "tests/test_bad_inputs.py::test_a_zero_learning_rate_warns",
    "empty-prompt": "tests/test_bad_inputs.py::test_an_empty_prompt_is_an_unconditional_sample",
    "cache-of-another-encoder": "tests/encoders/test_cache.py::test_a_cache_of_another_encoder_is_refused_with_both_fingerprints",
    "unreadable-prompt-line": "tests/analysis/test_evaluate.py::test_evaluate_a_prompt_file_reports_bad_lines_and_scores_the_rest",
    "kernels-mode": "tests/test_bad_inputs.py::test_an_unknown_kernels_mode_names_the_modes",
    "cache-too-small": "tests/encoders/test_cache.py::test_the_cache_is_sized_for_every_rank_and_a_short_one_warns",
    "batch-of-undecodable-images": "tests/data/test_folder.py::test_a_batch_with_no_decodable_image_is_skipped_under_every_callback",
    "init-from-other-parts": "tests/tasks/test_editing.py::test_init_from_refuses_a_checkpoint_of_other_parts",
    "undecodable-reference-image": "tests/tasks/test_editing.py::test_sample_with_images_names_a_missing_or_undecodable_file",
    "more-references-than-named": "tests/tasks/test_editing.py::test_more_images_than_the_instruction_names_is_refused",
    "references-beyond-context": "tests/tasks/test_editing.py::test_the_encoder_refuses_more_image_tokens_than_its_context",
    "editing-without-a-vlm": "tests/tasks/test_editing.py::test_an_encoder_that_reads_no_images_is_refused",
    "reference-of-another-size": "tests/tasks/test_editing.py::test_edit_fine_tuning_runs_from_the_cli_and_is_scored",
    "gpu-recipe-without-gpu": "tests/test_scale.py::test_gpu_recipes_on_a_machine_without_one_fail_in_one_line_before_any_run_folder",
    "fsdp-on-the-cpu": "tests/test_scale.py::test_fsdp_on_the_cpu_is_refused_by_lightning_and_by_torch",
    "streaming-over-a-dataset": "tests/data/test_streaming.py::test_what_is_not_a_streaming_dataset_is_refused_clearly",
    "hf-metadata-without-caption": "tests/data/test_folder.py::test_hugging_face_imagefolder_metadata_is_read",
    "edit-folder-malformed": "tests/data/test_edit_folder.py::test_a_malformed_index_names_the_line",
    "joint-image-embedding": "tests/joint/test_task.py::test_image_embedding_mistakes_are_one_clear_line",
    "joint-sampling": "tests/joint/test_task.py::test_sampling_mistakes_are_one_clear_line",
    "joint-codec-mismatch": "tests/joint/test_task.py::test_the_recipe_trains_reloads_and_another_task_is_named",
    "joint-checkpoint-elsewhere": "tests/joint/test_task.py::test_the_recipe_trains_reloads_and_another_task_is_named",
    "joint-text-stream": "tests/joint/test_masked.py::test_masked_stream_mistakes_are_one_clear_line",
}


def first_error(err: str) -> str:
    return next((line for line in err.splitlines() if line.startswith("error")), err.strip().splitlines()[-1] if err.strip() else "")


@pytest.mark.parametrize(("row", "argv", "message"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_clear_line_before_any_run_folder(row, argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the offline row: no network retries
    monkeypatch.chdir(tmp_path)
    if argv[0] == "fit":
        argv = [*argv, f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"]
    try:
        code = main(argv)
    except SystemExit as e:  # the argument parser exits by itself
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, f"{row}: exit {code}\n{err[-1500:]}"
    assert message in first_error(err), f"{row}: the first error line does not say {message!r}:\n{err[-1500:]}"
    assert not (tmp_path / "runs").exists(), f"{row}: a run folder was made"


@pytest.fixture(scope="module")
def smoke_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    assert main(fit(f"--trainer.logger.init_args.save_dir={root}")) == 0
    return next(root.glob("*/version_0/checkpoints/last.ckpt"))


@pytest.mark.parametrize(("row", "message"), FILE_ROWS, ids=[r[0] for r in FILE_ROWS])
@pytest.mark.slow
def test_a_bad_checkpoint_file_is_one_clear_line(row, message, smoke_checkpoint, tmp_path, capsys):
    path = tmp_path / "x.ckpt"
    if row == "ckpt-directory":
        path = smoke_checkpoint.parent
    elif row == "ckpt-empty":
        path.write_bytes(b"")
    elif row in ("ckpt-truncated", "resume-truncated-ckpt"):
        path.write_bytes(smoke_checkpoint.read_bytes()[:1500])
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    if row.startswith("resume"):
        argv = fit(f"--ckpt_path={path}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}")
    else:
        argv = ["sample", "--ckpt", str(path), "--prompt", "a red circle", "--out", str(tmp_path / "g.png")]
    assert main(argv) == 2
    assert message in first_error(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_a_zero_learning_rate_warns(encoder):
    from functools import partial

    from kit.backbones import SingleStreamDiT
    from kit.fusion import LAPHead
    from kit.tasks import TextToImage

    with pytest.warns(UserWarning, match="the learning rate is 0"):
        TextToImage(
            encoder,
            fusion=LAPHead,
            backbone=partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2),
            image_size=16,
            optimizer=partial(torch.optim.AdamW, lr=0.0),
        )


def test_an_empty_prompt_is_an_unconditional_sample(encoder):
    from functools import partial

    from kit.backbones import SingleStreamDiT
    from kit.fusion import LAPHead
    from kit.tasks import TextToImage

    module = TextToImage(
        encoder,
        fusion=partial(LAPHead, layer_depth=0, refiner_depth=0),
        backbone=partial(SingleStreamDiT, patch_size=8, width=32, depth=1, num_heads=2),
        image_size=16,
    )
    with torch.no_grad():
        module.fusion.null_tokens.fill_(0.5)
        cond = module.condition(["a red circle", "", "   "])
    null = module.fusion.null_conditioning(1)
    for row in (1, 2):
        assert int(cond.mask[row].sum()) == 1 and torch.equal(cond.tokens[row, 0], null.tokens[0, 0]), "the learned null conditioning"
    assert int(cond.mask[0].sum()) > 1, "a real prompt keeps its tokens"
    with pytest.warns(UserWarning, match=r"1 empty prompt\(s\): sampled without a prompt"):
        empty = module.generate([""], num_steps=2, seed=0, guidance_scale=3.0)
    unconditional = module.generate(["a red circle"], num_steps=2, seed=0, guidance_scale=0.0)  # scale 0: the null branch alone
    assert torch.allclose(empty, unconditional, atol=1e-6), "sampling an empty prompt is sampling without a prompt"


def test_an_unknown_kernels_mode_names_the_modes(monkeypatch):
    from kit.kernels import kernel_mode

    monkeypatch.setenv("KIT_KERNELS", "fast")
    with pytest.raises(ValueError, match=r"KIT_KERNELS='fast' is not a mode; choose one of auto, triton, torch"):
        kernel_mode()


def test_the_reliability_table_lists_exactly_these_rows():
    table = (REPO / "docs" / "reliability.md").read_text()
    ids = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, flags=re.M))
    expected = {r[0] for r in ROWS} | {r[0] for r in FILE_ROWS} | set(OTHER_TESTS)
    assert ids == expected, f"in the doc only: {sorted(ids - expected)}; in the tests only: {sorted(expected - ids)}"
    assert len(ids) >= 30
    for row, test in OTHER_TESTS.items():
        file, name = test.split("::")
        assert f"def {name}(" in (REPO / file).read_text(), f"{row}: {test} does not exist"
