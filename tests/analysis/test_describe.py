"""`kit describe`: parameter and GMAC counts pinned against the DiT paper (Peebles & Xie 2023, table 4)."""

from pathlib import Path

import pytest

from kit.verbs.describe import describe_class_conditional

REPO = Path(__file__).resolve().parents[2]

# (params in millions, Gflops as the paper counts them: multiply-adds) for class-conditional 256-px models
DIT_PAPER = {
    "s2": (33.0, 6.06), "s4": (33.0, 1.41), "s8": (33.0, 0.36),
    "b2": (130.0, 23.01), "b4": (130.0, 5.56), "b8": (131.0, 1.42),
    "l2": (458.0, 80.71), "l4": (458.0, 19.70), "l8": (459.0, 5.01),
    "xl2": (675.0, 118.64), "xl4": (675.0, 29.05), "xl8": (676.0, 7.39),
}  # fmt: skip
# The single-stream DiT carries the class as one extra token (the paper's DiT adds it in adaLN):
# negligible at patch 2 (256 image tokens), more visible at patch 8 (16 image tokens).
GMAC_TOLERANCE = {"2": 0.02, "4": 0.04, "8": 0.10}


@pytest.mark.parametrize("preset", sorted(DIT_PAPER))
def test_describe_matches_the_dit_paper(preset):
    args = ["fit", "-c", str(REPO / "recipes/lap.yaml"), "-c", str(REPO / f"recipes/backbones/dit_{preset}.yaml"), "--trainer.logger=false"]
    report = describe_class_conditional(args, num_classes=1000, image_size=32, channels=4)
    params, gflops = DIT_PAPER[preset]
    assert abs(report.params / 1e6 - params) / params < 0.02, (report.params, params)
    assert abs(report.gmacs - gflops) / gflops < GMAC_TOLERANCE[preset[-1]], (report.gmacs, gflops)


def test_describe_a_recipe(capsys, repo, monkeypatch):
    from kit.cli import main

    monkeypatch.chdir(repo)
    assert main(["describe", "-c", "recipes/lap.yaml"]) == 0
    out = capsys.readouterr().out
    for part in ("encoder", "fusion", "backbone", "total"):
        assert part in out
    assert "LAPHead" in out and "SingleStreamDiT" in out
