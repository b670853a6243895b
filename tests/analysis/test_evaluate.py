"""`kit evaluate` and `kit oracle-check` end to end, and the anchors the issue fixes."""

import json

import pytest
import yaml

from kit.cli import main

REPO_SMOKE = ["-c", "recipes/lap.yaml", "-c", "recipes/smoke.yaml"]


@pytest.mark.parametrize("source, check", [("gt", lambda r: r["overall"] >= 0.99), ("noise", lambda r: r["overall"] <= 0.05)])
@pytest.mark.slow
def test_anchor_scores_on_the_whole_suite(source, check, tmp_path):
    out = tmp_path / f"{source}.json"
    assert main(["evaluate", "--suite", source, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["num_prompts"] >= 500 and set(results["categories"]) >= {"counting", "position", "dense"}
    assert check(results), results


@pytest.mark.slow
def test_evaluate_a_checkpoint_and_bad_arguments(tmp_path, capsys, repo):
    from kit.cli import run_cli

    run_cli(["fit", *[str(repo / a) if a.endswith(".yaml") else a for a in REPO_SMOKE], f"--trainer.logger.init_args.save_dir={tmp_path}"])
    ckpt = next(tmp_path.glob("*/version_0/checkpoints/last.ckpt"))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--ckpt", str(ckpt), "--per-category", "2", "--images-per-prompt", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["num_images"] == 2 * 2 * 7
    # each category is the fraction of its 2 x 2 images scored right, and overall their mean
    assert len(results["categories"]) == 7 and all(float(v * 4).is_integer() for v in results["categories"].values())
    assert results["overall"] == pytest.approx(sum(results["categories"].values()) / 7)
    sampler = yaml.safe_load((repo / "recipes/lap.yaml").read_text())["model"]["init_args"]["sampler"]["init_args"]
    assert results["steps"] == 2 and results["shift"] == sampler.get("shift", 1.0), "the recipe's sampler settings are recorded"
    out2 = tmp_path / "r2.json"
    assert main(["evaluate", "--ckpt", str(ckpt), "--per-category", "1", "--shift", "4", "--guidance", "0", "--out", str(out2)]) == 0
    shifted = json.loads(out2.read_text())
    assert shifted["shift"] == 4.0 and shifted["guidance_scale"] == 0.0, "the settings given on the command line are the ones recorded"

    assert main(["evaluate", "--suite", "t2i", "--out", str(out)]) == 2
    assert "--suite t2i needs --ckpt" in capsys.readouterr().err
    assert main(["evaluate", "--suite", "gt", "--prompts", "nope", "--out", str(out)]) == 2
    assert "shipped suites: t2i_v1" in capsys.readouterr().err


@pytest.mark.slow
def test_oracle_check_verb_writes_its_report(tmp_path):
    out = tmp_path / "oracle.json"
    assert main(["oracle-check", "--n", "20", "--sizes", "[32]", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["sizes"]["32"]["clean"]["exact_scene"] == 1.0
    assert set(report["sizes"]["32"]) == {"clean", "noise", "blur", "colour_jitter", "all", "strong_blur", "resample", "jpeg", "redrawn"}


def test_evaluate_a_prompt_file_reports_bad_lines_and_scores_the_rest(tmp_path, capsys):
    from kit.cli import main

    prompts = tmp_path / "mine.txt"
    prompts.write_text("a red circle\n# a comment\nthree blue squares\na purple elephant\n\n")
    out = tmp_path / "noise.json"
    assert main(["evaluate", "--suite", "noise", "--prompts", str(prompts), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["num_prompts"] == 2 and list(results["categories"]) == ["custom"]
    assert results["skipped_prompts"] == [results["skipped_prompts"][0]] and results["skipped_prompts"][0].startswith("line 4:")
    assert "purple elephant" in capsys.readouterr().err
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text('{"prompt": "a red circle", "category": "colours"}\n{"prompt": "two green squares", "category": "counting"}\nnot json\n')
    assert main(["evaluate", "--suite", "noise", "--prompts", str(jsonl), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert list(results["categories"]) == ["counting", "colours"] and results["skipped_prompts"][0].startswith("line 3: not JSON")
    # a file with nothing readable, a missing file, and the gt anchor (no scenes) fail in one line
    (tmp_path / "bad.txt").write_text("a purple elephant\n")
    for path, suite in ((tmp_path / "bad.txt", "noise"), (tmp_path / "none.txt", "noise"), (prompts, "gt")):
        assert main(["evaluate", "--suite", suite, "--prompts", str(path), "--out", str(out)]) == 2
