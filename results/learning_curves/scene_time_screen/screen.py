"""Scratch: train a recipe for N steps, save module, score suite subset, dump sample grid."""
import sys, time, json, torch, numpy as np
sys.path.insert(0, ".")
from kit.cli import run_cli
from kit.analysis.evaluate import subset, generate_suite
from kit.analysis.scoring import score_images
from kit.world.suites import load_suite
from kit.world.oracle import Oracle
from PIL import Image
name = sys.argv[1]; steps = int(sys.argv[2]); extra = sys.argv[3:]
args = []
cfgs = [a for a in extra if a.endswith('.yaml')]
ov = [a for a in extra if not a.endswith('.yaml')]
for c in cfgs: args += ["-c", c]
args += [f"--trainer.max_steps={steps}", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0",
         "--trainer.logger=false", "--trainer.enable_progress_bar=false"] + ov
cli = run_cli(args, run=False)
t0 = time.time()
cli.trainer.fit(cli.model, cli.datamodule)
train_s = time.time() - t0
m = cli.model
torch.save(m.state_dict(), f"screen_out/{name}.pt")
entries = subset(load_suite(), 20)
t1 = time.time()
imgs = generate_suite(m, entries, 1)
res = score_images(entries, [[((i.permute(1,2,0).numpy()+1)*127.5).round().clip(0,255).astype(np.uint8) for i in im] for im in imgs])
res["train_s"] = train_s; res["eval_s"] = time.time()-t1; res["name"] = name; res["steps"]=steps; res["args"]=extra
print(json.dumps({k: res[k] for k in ("name","steps","train_s","overall","categories")}), json.dumps(res["dpg"]["score"]))
open("screen_out/results.jsonl","a").write(json.dumps(res)+"\n")
# grid: first 4 of each category
sel = [i for i,e in enumerate(entries)]
rows=[]
cats = {}
for i,e in enumerate(entries): cats.setdefault(e.category, []).append(i)
for c, idx in cats.items():
    row = [((imgs[i][0].permute(1,2,0).numpy()+1)*127.5).clip(0,255).astype(np.uint8) for i in idx[:8]]
    rows.append(np.concatenate(row, 1))
g = np.concatenate(rows, 0)
Image.fromarray(g).resize((g.shape[1]*3, g.shape[0]*3), Image.NEAREST).save(f"screen_out/{name}.png")
o = Oracle()
with open(f"screen_out/{name}_read.txt","w") as f:
    for c, idx in cats.items():
        for i in idx[:8]:
            img = ((imgs[i][0].permute(1,2,0).numpy()+1)*127.5).round().clip(0,255).astype(np.uint8)
            f.write(f"{c} | {entries[i].prompt} | {[o2.facts() for o2 in o.read(img).objects]}\n")
