import sys, torch, numpy as np, json, itertools, time
sys.path.insert(0, ".")
from kit.cli import run_cli
from kit.analysis.evaluate import subset, generate_suite
from kit.analysis.scoring import score_images
from kit.world.suites import load_suite
from kit.diffusion import EulerSampler, DDIMSampler
name = sys.argv[1]; extra = sys.argv[2:]
args=[]
for c in [a for a in extra if a.endswith('.yaml')]: args += ["-c", c]
args += [a for a in extra if not a.endswith('.yaml')] + ["--trainer.logger=false"]
cli = run_cli(args, run=False); m = cli.model
m.load_state_dict(torch.load(f"screen_out/{name}.pt")); m.eval()
entries = subset(load_suite(), 20)
def ev(**kw):
    imgs = generate_suite(m, entries, 2, **kw)
    r = score_images(entries, [[((i.permute(1,2,0).numpy()+1)*127.5).round().clip(0,255).astype(np.uint8) for i in im] for im in imgs])
    return r
for shift, g, steps in [(8,2,30),(3,2,30),(1,2,30),(3,1,30),(3,4,30),(3,2,100),(8,4,30),(1,4,30)]:
    m.sampler = EulerSampler(num_steps=steps, shift=shift)
    r = ev(guidance_scale=g)
    print(f"shift {shift} g {g} steps {steps}: overall {r['overall']:.3f} dpg {r['dpg']['score']:.3f}", {k: round(v,2) for k,v in r['categories'].items()}, flush=True)
