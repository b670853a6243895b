import sys, torch, numpy as np
from collections import Counter
from kit.loading import load_checkpoint
from kit.analysis.evaluate import generate_suite
from kit.world.suites import SuiteEntry
from kit.world.oracle import Oracle
from kit.world.parser import parse_caption

ckpt, cat, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = dict(a.split("=") for a in sys.argv[4:])
kw = {k: float(v) if k in ("guidance_scale",) else int(v) for k, v in kw.items()}
m = load_checkpoint(ckpt).eval()
entries = [SuiteEntry.from_json(l) for l in open("kit/assets/suites/t2i_v1.jsonl") if f'"{cat}"' in l][:n]
imgs = generate_suite(m, entries, 2, **kw)
o = Oracle()
ok = 0; nobj = Counter()
for e, ims in zip(entries, imgs):
    spec = parse_caption(e.prompt)
    for im in ims:
        arr = ((im.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        s = o.read(arr)
        sat = spec.satisfied_by(s); ok += sat
        nobj[len(s.objects)] += 1
        print(int(sat), e.prompt, '->', [(x.size[0], x.colour, x.shape, x.row, x.col) for x in s.objects])
print("acc", ok / (2 * len(entries)), "objects", sorted(nobj.items()))
