"""Sampler settings on one checkpoint, per category (scratch)."""
import sys, json
from kit.loading import load_checkpoint
from kit.analysis.evaluate import generate_suite, subset
from kit.analysis.scoring import score_images
from kit.world.suites import load_suite
from kit.diffusion.samplers import EulerSampler, DDIMSampler
ckpt = sys.argv[1]
m = load_checkpoint(ckpt).eval()
entries = subset(load_suite("t2i", 1), 20)
configs = {
    "euler30_g4": (EulerSampler(30, shift=3.0), 4.0),
    "ddim_eta1_30_g4": (DDIMSampler(30, shift=3.0, eta=1.0), 4.0),
    "ddim_eta1_60_g4": (DDIMSampler(60, shift=3.0, eta=1.0), 4.0),
    "euler30_g2": (EulerSampler(30, shift=3.0), 2.0),
    "ddim_eta1_30_g2": (DDIMSampler(30, shift=3.0, eta=1.0), 2.0),
}
for name, (sampler, g) in configs.items():
    m.sampler = sampler
    imgs = generate_suite(m, entries, 2, guidance_scale=g)
    r = score_images(entries, imgs)
    print(name, round(r["overall"], 3), {k: round(v, 2) for k, v in r["categories"].items()}, "dpg", round(r["dpg"]["score"], 3), flush=True)
