#!/usr/bin/python3
"""Tests of the training pipeline (train/) on the tiny config, run by meson:
test_train.py VDIT CASE.  Exit 0 pass, 1 fail, 77 skip (no torch or sentencepiece).

Cases: data (SynthVideo, the judge, PNG, tokenizer), loss (a few base steps lower the
loss), resume (an interrupted stage resumes to the same weights), carry (a run packed in
parts mid-stage, unpacked elsewhere, resumes to nearly the same weights), stages (MLCD and
layer-wise distillation steps run and lower their losses), export (the engine loads the
export and renders what PyTorch renders, full and tile), seed (an exported base starts a
new run), pipeline (every stage end to
end with `vdit search-masks` and SynthBench through the engine), rehearse (the pipeline
cut down to a few CPU steps, from scratch and seeded)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback

ROOT = os.environ.get("VDIT_SOURCE_ROOT",
                      os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TRAIN = os.path.join(ROOT, "train")
TINY = os.path.join(TRAIN, "configs", "tiny.json")
VDIT = sys.argv[1] if len(sys.argv) > 1 else "vdit"
os.environ.setdefault("VDIT_TRAIN_THREADS", "1")  # tests run two at a time on 2 cores
os.environ["VDIT"] = os.path.abspath(VDIT) if os.path.exists(VDIT) else VDIT
sys.path.insert(0, TRAIN)

try:
    import cpuenv  # noqa: F401
    import numpy as np
    import sentencepiece  # noqa: F401
    import torch
except ImportError as e:
    print(f"skip: {e.name} is not importable by {sys.executable}")
    sys.exit(77)

import trainlib as tl  # noqa: E402


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def tiny_run(tmp, **overrides):
    """A run directory for the tiny config (overrides: section → dict of keys)."""
    run = tl.load_run_config(TINY)
    for sec, d in overrides.items():
        run[sec].update(d)
    cfg = os.path.join(tmp, "tiny.json")
    tl.write_json(cfg, run)
    run_dir = os.path.join(tmp, "run")
    return tl.prepare_run(cfg, run_dir), run_dir, cfg


def case_data(tmp):
    import pngio
    import synthmetrics as sm
    import synthvideo as sv
    rng = np.random.default_rng(0)
    x, prompts = sv.batch(rng, 6, 8, 32, 32, 0.5)
    check(x.shape == (6, 8, 32, 32, 3) and x.dtype == np.float32, f"batch {x.shape}")
    check(x.min() >= -1.0 and x.max() <= 1.0, "values outside [-1, 1]")
    check(all(p.endswith("background") for p in prompts), prompts)
    # held-out combinations never come out of the training sampler
    for _ in range(300):
        s = sv.sample_spec(rng, 0.3)
        for c, sh, m in s["objects"]:
            check((c, sh, m, s["background"]) not in sv.HELDOUT_SET, f"held-out {s}")
    # the judge is right on ground-truth clips
    res = [(sm.analyse(tl.latent_to_frames(sv.render({"objects": [c[:3]], "background": c[3]},
                                                8, 32, 32, rng))), c)
           for _, c in sv.heldout_prompts()]
    s = sm.score(res)
    check(s["colour"] == 1.0 and s["shape"] >= 0.95 and s["motion"] == 1.0, f"judge {s}")
    # shape by prompted shape: each shape's clips alone
    check(sorted(s["shape_by"]) == sorted(sv.SHAPES) and min(s["shape_by"].values()) >= 0.9,
          f"shape_by {s['shape_by']}")
    wrong = [({**a, "shape": "circle"}, c) if c[1] == "cross" else (a, c) for a, c in res]
    by = sm.score(wrong)["shape_by"]
    check(by["cross"] == 0.0 and by["circle"] == s["shape_by"]["circle"], f"shape_by {by}")
    # the training-curve table gains a column per shape where evaluations recorded them
    import synthbench
    os.makedirs(os.path.join(tmp, "run", "base"))
    with open(os.path.join(tmp, "run", "base", "evals.jsonl"), "w") as f:
        e = {"step": 10, "hours": 0.1, "clips": 80, "colour": 1.0, "shape": 0.5,
             "motion": 1.0, "consistency": 0.9}
        f.write(json.dumps(e) + "\n")
        f.write(json.dumps({**e, "step": 20, "shape_by": {"circle": 1.0, "cross": 0.25}}) + "\n")
    t = synthbench.curve_table(os.path.join(tmp, "run")).splitlines()
    check(t[0].endswith("| consistency | circle | cross |") and t[1].count("---") == 9 and
          t[2].endswith("| 0.90 |  |  |") and t[3].endswith("| 0.90 | 1.00 | 0.25 |"), t)
    pc = sm.per_clip(res)
    check(len(pc["shape"]) == len(res) and None in pc["motion"], "per-clip scores")
    # paired differences skip clips without a direction on either side
    a = {"colour": [1, 1, 1, 1], "shape": [1, 0, 1, 0], "motion": [1, None, 0, 1],
         "consistency": [0.8] * 4}
    b = {"colour": [1, 1, 1, 1], "shape": [1, 1, 1, 1], "motion": [1, 1, None, 1],
         "consistency": [0.7] * 4}
    d = sm.paired_difference(a, b)
    check(d["colour"] == (0.0, 0.0) and d["motion"] == (0.0, 0.0), d)
    check(abs(d["shape"][0] + 0.5) < 1e-9 and abs(d["shape"][1] - 0.5 / np.sqrt(3)) < 1e-9,
          d["shape"])
    check(abs(d["consistency"][0] - 0.1) < 1e-9 and d["consistency"][1] < 1e-9, d)
    # PNG round trip
    img = pngio.contact_sheet([tl.latent_to_frames(c) for c in x[:2]])
    path = os.path.join(tmp, "s.png")
    pngio.write_png(path, img)
    check(np.array_equal(pngio.read_png(path), img), "PNG round trip")
    # every grammar word is one token
    tok = os.path.join(tmp, "tok.model")
    sv.train_tokenizer(tok)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tok)
    words = set(" ".join(sv.grammar_sentences()).split())
    split = [w for w in words if len(sp.encode(w)) != 1]
    check(not split, f"words split into pieces: {split}")


def case_loss(tmp):
    import stage_base
    # the schedule: linear warm-up, the peak held for `hold` of the rest, cosine to min_lr
    lr = [tl.lr_at(s, 100, 1.0, 10, 0.1, hold=0.5) for s in range(101)]
    check(lr[0] == 0.1 and lr[9] == 1.0 and lr[55] == 1.0, f"warm-up or hold: {lr[:56]}")
    check(all(a > b for a, b in zip(lr[55:], lr[56:])) and abs(lr[100] - 0.1) < 1e-12,
          f"decay: {lr[55:]}")
    # a restart: the first schedule unchanged up to `at`, then a second warm-up and decay
    cfg = {"lr": 1.0, "warmup": 10, "hold": 0.5, "restart": {"at": 100, "lr": 0.5, "warmup": 10}}
    lr2 = [tl.stage_lr(s, 200, cfg, 200, 0.1) for s in range(201)]
    check(lr2[:100] == lr[:100], "the schedule before the restart changed")
    check(lr2[100] == 0.05 and lr2[109] == 0.5 and abs(lr2[200] - 0.05) < 1e-12 and
          all(a > b for a, b in zip(lr2[110:], lr2[111:])), f"after the restart: {lr2[100:]}")
    cfg["restart"] = [cfg["restart"], {"at": 150, "lr": 0.2, "warmup": 5}]
    lr3 = [tl.stage_lr(s, 200, cfg, 200, 0.1) for s in range(201)]
    check(lr3[:100] == lr[:100] and lr3[109] == 0.5 and abs(lr3[149] - 0.05) < 1e-3 and
          lr3[150] == 0.04 and lr3[154] == 0.2 and abs(lr3[200] - 0.02) < 1e-12,
          f"two restarts: {lr3[100:]}")
    # a restart's other keys (t_mean) hold from its step on, over the ones before
    cfg["t_mean"], cfg["restart"][0]["t_mean"] = 1.0, 0.0
    tm = [tl.phase_cfg(s, cfg)["t_mean"] for s in (0, 99, 100, 150, 200)]
    check(tm == [1.0, 1.0, 0.0, 0.0, 0.0] and "at" not in tl.phase_cfg(150, cfg), tm)
    run, run_dir, _ = tiny_run(tmp)
    tl.set_threads(run)
    model = tl.new_model(run, run_dir, seed=0)
    opt = tl.make_optimizer(model, 3e-3, 0.0)
    batcher = tl.TextBatcher(model.tokenizer)
    rng = np.random.default_rng(0)
    x0, prompts, eps = stage_base.flow_batch(rng, run, 8)
    ids, mask = batcher(prompts)
    t = tl.sample_times(rng, 8, 0.5, 1.0, 0.1)
    tt = t[:, None, None, None, None]
    xt = (1 - tt) * x0 + tt * eps
    losses = []
    for _ in range(25):
        loss = ((tl.velocity(model, xt, t, ids, mask) - (eps - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    check(losses[-1] < 0.8 * losses[0], f"loss did not go down: {losses}")
    # the stage itself, a few steps from scratch: its logged loss falls too
    res = stage_base.run_stage(run, run_dir, max_steps=30, quiet=True)
    check(res is not None and res["steps"] == 30, res)
    logged = [float(line.split(" loss ")[1].split()[0])
              for line in open(os.path.join(run_dir, "log.txt")) if "[base] step " in line]
    check(len(logged) >= 2 and logged[-1] < logged[0], f"stage loss {logged}")
    for f in ("ckpt.pt", "best.pt", "final.pt", "done.json", "evals.jsonl"):
        check(os.path.exists(os.path.join(run_dir, "base", f)), f"base/{f} missing")


def interrupted(run_stage, at):
    """run_stage() with a stop requested (as SIGTERM does) at its at-th step."""
    count = {"n": 0}
    loop_cls = tl.StageLoop

    class Interrupting(loop_cls):
        def loop(self, step_fn, *args):
            def fn(i):
                count["n"] += 1
                if count["n"] == at:
                    tl.request_stop()
                return step_fn(i)
            return loop_cls.loop(self, fn, *args)
    tl.StageLoop = Interrupting
    try:
        return run_stage()
    finally:
        tl.StageLoop = loop_cls


def trained_and_fresh(tmp):
    """The tiny run trained 16 base steps in tmp/a, and a fresh one in tmp/b."""
    import stage_base
    for d in ("a", "b"):
        os.makedirs(os.path.join(tmp, d))
    run, ra, _ = tiny_run(os.path.join(tmp, "a"))
    tl.set_threads(run)
    stage_base.run_stage(run, ra, max_steps=16, quiet=True)
    run, rb, _ = tiny_run(os.path.join(tmp, "b"))
    return run, ra, rb


def case_resume(tmp):
    import stage_base
    run, ra, rb = trained_and_fresh(tmp)
    stage_base.run_stage(run, rb, max_steps=8, quiet=True)   # "interrupted" at 8 ...
    os.remove(os.path.join(rb, "base", "done.json"))
    stage_base.run_stage(run, rb, max_steps=16, quiet=True)  # ... and resumed
    wa = tl.load(os.path.join(ra, "base", "ckpt.pt"))
    wb = tl.load(os.path.join(rb, "base", "ckpt.pt"))
    check(wa["state"]["step"] == wb["state"]["step"] == 16, "steps")
    # the schedule differs before step 8 (its length), so compare after a common point:
    # the resumed run must have continued, not restarted (its counters and RNG advanced)
    check(wb["state"]["clips"] == 16 * run["base"]["batch"], wb["state"])
    check(any("resumed at step 8" in line for line in open(os.path.join(rb, "log.txt"))),
          "no resume in the log")
    # same totals from the start: bit-identical weights after an interruption
    c = os.path.join(tmp, "c")
    os.makedirs(c)
    run, rc, cfg = tiny_run(c)
    check(interrupted(lambda: stage_base.run_stage(run, rc, max_steps=16, quiet=True), 9)
          is None, "not stopped")
    stage_base.run_stage(run, rc, max_steps=16, quiet=True)
    wc = tl.load(os.path.join(rc, "base", "ckpt.pt"))
    diff = max(float((wa["model"][k] - wc["model"][k]).abs().max()) for k in wa["model"])
    check(diff < 1e-5, f"resumed weights differ from uninterrupted ones by {diff}")


def case_carry(tmp):
    """A run packed into parts mid-stage (train/run_state.py), unpacked elsewhere and
    resumed, ends where the uninterrupted run ends (within the bf16 rounding of its EMA and
    optimiser moments); a missing or damaged part is refused."""
    import run_state as rs
    import stage_base
    run, ra, rb = trained_and_fresh(tmp)
    check(interrupted(lambda: stage_base.run_stage(run, rb, max_steps=16, quiet=True), 9)
          is None, "not stopped")
    parts = os.path.join(tmp, "parts")
    m = rs.pack(rb, parts, 64 << 10)
    check(len(m["parts"]) >= 2 and m["stages"] == {"base": "step 9"}, m)
    check(m["bytes"] < 0.75 * m["bytes_unpacked_from"], f"not smaller: {m}")
    # as the calls bring them back (a few parts each) and carry them there (three each)
    back = [os.path.join(tmp, f"back{i}") for i in range(2)]
    for i, d in enumerate(back):
        os.makedirs(d)
        shutil.copy(os.path.join(parts, "state.json"), d)
        for p in m["parts"][i::2]:
            shutil.copy(os.path.join(parts, p), d)
    rs.gather(os.path.join(tmp, "gathered"), back)
    carried = rs.split(os.path.join(tmp, "gathered"), os.path.join(tmp, "carry"), 3)
    check(len(carried) == (len(m["parts"]) + 2) // 3, carried)
    arrived = os.path.join(tmp, "arrived")
    for d in carried:
        rs.gather(arrived, [d])
    moved = os.path.join(tmp, "elsewhere", "run")
    rs.unpack(arrived, moved)
    def files(d):
        return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d)
                      for f in fs if f != "lock")
    check(files(moved) == files(rb) and "base/ckpt.pt" in files(moved),
          f"{files(moved)} travelled of {files(rb)}")
    ck = tl.load(os.path.join(moved, "base", "ckpt.pt"))
    check(all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())
          and all(v.dtype == torch.bfloat16 for v in ck["ema"].values()
                  if v.is_floating_point() and v.numel() > 1), "the live weights or EMA")
    res = stage_base.run_stage(run, moved, max_steps=16, quiet=True)
    check(res is not None and res["steps"] == 16, res)
    wa = tl.load(os.path.join(ra, "base", "ckpt.pt"))
    wm = tl.load(os.path.join(moved, "base", "ckpt.pt"))
    check(wm["state"]["clips"] == wa["state"]["clips"], wm["state"])
    scale = max(float(v.abs().max()) for v in wa["model"].values())
    diff = max(float((wa["model"][k] - wm["model"][k]).abs().max()) for k in wa["model"])
    check(0 < diff < 1e-3 * scale, f"carried run differs from the uninterrupted one by {diff}")
    # light: the stage in progress without optimiser moments or best.pt, resumed afresh
    lightp = os.path.join(tmp, "parts-light")
    ml = rs.pack(rb, lightp, 1 << 30, light=True)
    check(ml["stages"] == {"base": "step 9 (light)"} and ml["bytes"] < 0.6 * m["bytes"],
          f"light {ml} against {m}")
    lit = os.path.join(tmp, "light-run")
    rs.unpack(lightp, lit)
    ck = tl.load(os.path.join(lit, "base", "ckpt.pt"))
    check("opt" not in ck and not os.path.exists(os.path.join(lit, "base", "best.pt")) and
          all(v.dtype == torch.bfloat16 for v in ck["model"].values()
              if v.is_floating_point() and v.numel() > 1), sorted(ck))
    # fresh moments: the rate warms up again from the step the stage resumed at
    model = tl.new_model(run, lit, seed=0)
    opt = tl.make_optimizer(model, 1.0, 0.0)
    probe = tl.StageLoop(run, lit, "base", {"model": model, "ema": tl.new_model(run, lit, 0),
                                            "opt": opt}, np.random.default_rng(0), 16, True)
    check(probe.resume() and probe.fresh_from == 9, probe.fresh_from)
    n = min(100, run["base"].get("warmup", 200))
    plain = [tl.stage_lr(s, 16, run["base"], 200, 0.1) for s in range(9, 16)]
    ramp = [probe.set_rate(opt, s, 200, 0.1) for s in range(9, 16)]
    check(all(abs(r - p * min(1, (k + 1) / n)) < 1e-12 for k, (r, p) in
              enumerate(zip(ramp, plain))) and ramp[0] < plain[0] and
          opt.param_groups[0]["lr"] == ramp[-1], f"rewarm over {n}: {ramp} against {plain}")
    res = stage_base.run_stage(run, lit, max_steps=16, quiet=True)
    check(res is not None and res["steps"] == 16 and res["best"]["step"] == 16, res)
    check(any("fresh moments" in line for line in open(os.path.join(lit, "log.txt"))),
          "no fresh optimiser state logged")
    wl = tl.load(os.path.join(lit, "base", "ckpt.pt"))["model"]
    diff = max(float((wa["model"][k] - wl[k]).abs().max()) for k in wa["model"])
    check(diff < 0.05 * scale, f"light-carried run differs by {diff} (scale {scale})")
    # a finished stage leaves its ckpt.pt and best.pt behind
    m2 = rs.pack(moved, os.path.join(tmp, "parts2"), 1 << 30)
    check(m2["stages"] == {"base": "done"} and len(m2["parts"]) == 1, m2)
    rs.unpack(os.path.join(tmp, "parts2"), os.path.join(tmp, "done-run"))
    check(not os.path.exists(os.path.join(tmp, "done-run", "base", "ckpt.pt")) and
          os.path.exists(os.path.join(tmp, "done-run", "base", "final.pt")), "finished stage")
    # a finished stage continued with more steps there starts from its final weights
    # (a learning rate too small to move them shows that it did not start over)
    done_run = os.path.join(tmp, "done-run")
    final = tl.load(os.path.join(done_run, "base", "final.pt"))["ema"]
    more = dict(run, base=dict(run["base"], restart={"at": 16, "lr": 1e-12, "warmup": 1}))
    res = stage_base.run_stage(more, done_run, max_steps=20, quiet=True)
    check(res is not None and res["steps"] == 20 and
          res["clips"] == 20 * run["base"]["batch"] and res["kept"] == res["best"]["step"],
          res)
    check(any("continued from the step-16 final weights" in line
              for line in open(os.path.join(done_run, "log.txt"))), "no continuation logged")
    w = tl.load(os.path.join(done_run, "base", "ckpt.pt"))["model"]
    diff = max(float((w[k] - final[k].float()).abs().max()) for k in final)
    check(diff < 1e-6, f"the continued stage moved {diff} from the final weights")
    # refused: an existing directory, a missing part, a damaged part
    def refused(dest, words):
        try:
            rs.unpack(parts, dest)
            raise Failure(f"unpack did not refuse ({words})")
        except rs.StateError as e:
            check(words in str(e), str(e))
    refused(moved, "exists")
    os.remove(os.path.join(parts, m["parts"][-1]))
    refused(os.path.join(tmp, "x"), "missing")
    rs.pack(rb, parts, 64 << 10)
    with open(os.path.join(parts, m["parts"][0]), "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    refused(os.path.join(tmp, "y"), "do not make")
    check(not os.path.exists(os.path.join(tmp, "y")), "a damaged part left a run behind")


def case_stages(tmp):
    import stage_base
    import stage_kd
    import stage_mlcd
    run, run_dir, _ = tiny_run(tmp, mlcd={"steps": 6, "teacher_steps": 1, "keep": "last"},
                               kd={"steps": 6})
    tl.set_threads(run)
    stage_base.run_stage(run, run_dir, quiet=True)
    res = stage_mlcd.run_stage(run, run_dir, quiet=True)
    check(res is not None and res["steps"] == 6, f"mlcd {res}")
    # keep "last": final.pt is the last EMA weights, whichever evaluation was best
    last = tl.load(os.path.join(run_dir, "mlcd", "ckpt.pt"))["ema"]
    final = tl.load(os.path.join(run_dir, "mlcd", "final.pt"))["ema"]
    check(res["kept"] == 6 and all(torch.equal(last[k], final[k]) for k in last), res)
    # a bad value in a stage's config is refused when the config loads
    for sec, key, value, message in (("kd", "keep", "newest", "kd.keep is 'newest'"),
                                     ("mlcd", "sample_steps", 0, "mlcd.sample_steps is 0")):
        tl.write_json(os.path.join(tmp, "bad.json"), dict(run, **{sec: {**run[sec], key: value}}))
        p = subprocess.run([sys.executable, os.path.join(TRAIN, "pipeline.py"), "--config",
                            os.path.join(tmp, "bad.json"), "--run-dir",
                            os.path.join(tmp, "bad")], capture_output=True, text=True)
        check(p.returncode != 0 and message in p.stderr and "Traceback" not in p.stderr,
              p.stderr)
    # stage 2 without the engine: a plan by hand (the search is tested in `pipeline`)
    T = run["video"]["frames"] // run["dit"]["patch"][0]
    os.makedirs(os.path.join(run_dir, "search"))
    tl.write_json(os.path.join(run_dir, "search", "plan.json"),
                  {"plan": [1] + [0] * (run["dit"]["depth"] - 1)})
    res = stage_kd.run_stage(run, run_dir, quiet=True)
    check(res is not None and res["steps"] == 6, f"kd {res}")
    lines = [line for line in open(os.path.join(run_dir, "log.txt")) if "[kd] step " in line]
    check(lines and " layers " in lines[-1], "kd log")
    # the motion probe reads the stages' checkpoints; bad sampler lists are refused
    probe = [sys.executable, os.path.join(TRAIN, "motion_probe.py"), "--run-dir", run_dir,
             "--checkpoint", "mlcd/final.pt"]
    p = subprocess.run(probe + ["--samplers", "2:1,1:2:3", "--seeds", "2"],
                       capture_output=True, text=True)
    check(p.returncode == 0 and "sampled, 2 steps, CFG 1, shift 1: motion" in p.stdout and
          "sampled, 1 steps, CFG 2, shift 3" in p.stdout, p.stdout + p.stderr)
    p = subprocess.run(probe + ["--samplers", "2:x"], capture_output=True, text=True)
    check(p.returncode != 0 and "not STEPS:CFG" in p.stderr, p.stderr)
    p = subprocess.run(probe + ["--seeds", "0"], capture_output=True, text=True)
    check(p.returncode != 0 and "--seeds must be at least 1" in p.stderr, p.stderr)
    # every attribute of a checkpoint's samples, per sampler
    scorer = [sys.executable, os.path.join(TRAIN, "eval_samplers.py"), "--run-dir", run_dir]
    p = subprocess.run(scorer + ["--checkpoint", "mlcd/final.pt", "--samplers", "2:1,1:2:3",
                                 "--seeds", "2"], capture_output=True, text=True)
    lines = p.stdout.splitlines()
    check(p.returncode == 0 and len(lines) == 2 and
          lines[0].startswith("mlcd/final.pt, 2 steps, CFG 1, shift 1, 2 seed(s): colour ") and
          " shape " in lines[0] and " motion " in lines[0] and " consistency " in lines[1],
          p.stdout + p.stderr)
    p = subprocess.run(scorer + ["--checkpoint", "nope.pt"], capture_output=True, text=True)
    check(p.returncode != 0 and "no such checkpoint" in p.stderr, p.stderr)
    p = subprocess.run(scorer[:-1] + [tmp], capture_output=True, text=True)
    check(p.returncode != 0 and "run.json: no such run config" in p.stderr and
          "Traceback" not in p.stderr, p.stderr)
    p = subprocess.run([sys.executable, os.path.join(TRAIN, "synthbench.py"), "--row",
                        f"x={run_dir}", "--seeds", "0"], capture_output=True, text=True)
    check(p.returncode != 0 and "must be at least 1" in p.stderr, p.stderr)
    # clips made side by side score as one at a time; their time is then a pass of its own
    import synthbench
    rows = [{"name": "tiny", "model": os.path.join(ROOT, "models", "tiny"), "steps": "2"}]
    one, _ = synthbench.bench(rows, VDIT, 3, 1, seeds=2, log=lambda *_: None)
    two, _ = synthbench.bench(rows, VDIT, 3, 1, seeds=2, log=lambda *_: None, jobs=2,
                              timing=["cpu"], timing_prompts=2)
    check(one[0]["per_clip"] == two[0]["per_clip"] and one[0]["timing_clips"] is None and
          two[0]["timing_clips"] == 2 and list(two[0]["timing"]) == ["cpu"] and
          0 < two[0]["timing"]["cpu"]["run"] < two[0]["timing"]["cpu"]["wall"],
          f"{one} {two}")
    check("one clip at a time over the first 2 prompts" in synthbench.table(two, 1),
          synthbench.table(two, 1))
    # the first three held-out prompts ask for a circle, a square and a triangle
    check("| setting | circle (1) | square (1) | triangle (1) |\n|---|---|---|---|\n| tiny | "
          in synthbench.table(two, 1), synthbench.table(two, 1))
    md = synthbench.timing_table(rows * 2, VDIT, ["cpu"], 2, 1)
    check(md.count("| tiny | 2 | 4 | full | ") == 2 and "| 1.0x |" in md and
          "s/clip (cpu, 1 thr)" in md, md)
    # the tile mask is the engine's k:(T−k)
    from vdit_torch.tile_mask import kept_tiles, tile_mask
    for k in range(T + 1):
        check(int(tile_mask(T, 1, k).sum()) == kept_tiles(T, k), f"mask k={k}")


def engine_frames(model_dir, prompt, seed, out, *extra):
    import pngio
    cmd = [VDIT, "generate", "--model", model_dir, "--prompt", prompt, "--seed", str(seed),
           "--out", out + "/", "--threads", "1", "--device", "cpu", "-q", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    check(p.returncode == 0, f"{' '.join(cmd)}: {p.stderr}")
    names = sorted(n for n in os.listdir(out) if n.endswith(".png"))
    return np.stack([pngio.read_png(os.path.join(out, n)) for n in names])


def case_export(tmp):
    import stage_base
    from export import attention_of, export, stage_model
    from vdit_torch import safetensors_io, samplers
    from vdit_torch.model import VditModel
    from vdit_torch.tile_mask import plan_masks
    run, run_dir, _ = tiny_run(tmp)
    tl.set_threads(run)
    stage_base.run_stage(run, run_dir, max_steps=10, quiet=True)
    out = os.path.join(tmp, "model")
    depth = run["dit"]["depth"]
    plan = [1] + [0] * (depth - 1)
    export(stage_model(run, run_dir, "base"), run, out, 3, 3.0, attention_of("tile", plan))
    p = subprocess.run([VDIT, "inspect", out], capture_output=True, text=True)
    check(p.returncode == 0 and "tile" in p.stdout, f"vdit inspect: {p.stderr}{p.stdout}")
    _, _, dtypes = safetensors_io.load(os.path.join(out, "model.safetensors"), with_dtypes=True)
    check(set(dtypes.values()) == {"BF16"}, f"dtypes {set(dtypes.values())}")
    m = VditModel.from_dir(out)  # the stored (bf16) values, as the engine reads them
    prompt = "a red circle moving left on a gray background"
    cond, unc = m.encode_text(m.tokens(prompt)), m.encode_text(m.tokens("", negative=True))
    gt, gy, gx = m.dit.grid(m.cfg.latent_shape())
    for mode, masks in (("full", None), ("tile", plan_masks(plan, (gt, gy, gx)))):
        def f(x, tau):
            t = torch.tensor([float(tau)])
            c = m.dit(x[None], t, cond[None], self_masks=masks)[0]
            u = m.dit(x[None], t, unc[None], self_masks=masks)[0]
            return u + 3.0 * (c - u)
        with torch.no_grad():
            ref = samplers.latent_to_frames(samplers.sample(f, m.cfg.latent_shape(), 5,
                                                            m.cfg.sampler))
        got = engine_frames(out, prompt, 5, os.path.join(tmp, mode), "--attention", mode)
        diff = int(np.abs(got.astype(int) - ref.astype(int)).max())
        check(got.shape == ref.shape and diff <= 2,
              f"{mode}: engine frames differ from PyTorch by {diff}")


def case_seed(tmp):
    """Exported finished stages (export.py) seed a new run (run_state.py seed) that holds
    the same weights and goes on after them, or continues the base when the config asks
    for more steps; exports out of order, of unfinished stages or of another config, and
    an existing run directory, are refused."""
    import run_state as rs
    import stage_base
    import stage_mlcd
    from export import attention_of, export, stage_model, trained_metadata
    run, run_dir, cfg = tiny_run(tmp)
    tl.set_threads(run)
    stage_base.run_stage(run, run_dir, max_steps=6, quiet=True)
    stage_mlcd.run_stage(run, run_dir, max_steps=2, quiet=True)

    def exported(stage, name, meta_stage=None, done="finished"):
        out = os.path.join(tmp, name)
        d = tl.stage_done(run_dir, stage) if done == "finished" else None
        export(stage_model(run, run_dir, stage), run, out, 4, 3.0, attention_of("full"),
               metadata=trained_metadata(meta_stage or stage, d))
        return out
    base, mlcd = exported("base", "base-model"), exported("mlcd", "mlcd-model")

    def refused(models, config, why):
        try:
            rs.seed(models, os.path.join(tmp, "refused"), config)
        except rs.StateError:
            check(not os.path.exists(os.path.join(tmp, "refused")) and
                  not os.path.exists(os.path.join(tmp, "refused.seeding")), "left a run behind")
            return
        check(False, f"seeded {why}")

    seeded = os.path.join(tmp, "seeded")
    d = rs.seed([base, mlcd], seeded, cfg)
    check(d["base"]["steps"] == 6 and d["mlcd"]["steps"] == 2 and
          d["base"]["clips"] == tl.stage_done(run_dir, "base")["clips"], d)
    for stage in ("base", "mlcd"):
        a = tl.load(os.path.join(run_dir, stage, "final.pt"))["ema"]
        b = tl.load(os.path.join(seeded, stage, "final.pt"))["ema"]
        diff = max(float((a[k] - b[k]).abs().max() / (a[k].abs().max() + 1e-12)) for k in a)
        check(sorted(a) == sorted(b) and diff <= 2 ** -8, f"{stage}: weights differ by {diff}")
    check(open(os.path.join(seeded, "tokenizer.model"), "rb").read() ==
          open(os.path.join(run_dir, "tokenizer.model"), "rb").read(), "tokenizer")
    try:
        rs.seed([base], seeded, cfg)
        check(False, "seeded over an existing run")
    except rs.StateError:
        pass
    wide = dict(tl.load_run_config(TINY))
    wide["dit"] = dict(wide["dit"], hidden=wide["dit"]["hidden"] * 2)
    wide_cfg = os.path.join(tmp, "wide.json")
    tl.write_json(wide_cfg, wide)
    refused([mlcd], cfg, "from MLCD without its base")
    refused([mlcd, base], cfg, "out of order")
    refused([exported("base", "unfinished", done=None)], cfg, "from weights of no finished stage")
    refused([exported("base", "kd-model", meta_stage="kd")], cfg, "from a KD export")
    refused([base], wide_cfg, "a model into another config")
    refused([os.path.join(tmp, "nowhere")], cfg, "from no model directory")
    # the base continued from the seeded weights with more steps, fresh moments
    only_base = os.path.join(tmp, "only-base")
    rs.seed([base], only_base, cfg)
    res = stage_base.run_stage(run, only_base, max_steps=9, quiet=True)
    check(res is not None and res["steps"] == 9, res)
    log = open(os.path.join(only_base, "log.txt")).read()
    check("continued from the step-6 final weights" in log, log)


def case_pipeline(tmp):
    import pipeline
    # the student sampled with more steps than it has segments (mlcd.sample_steps)
    run, run_dir, cfg = tiny_run(tmp, mlcd={"sample_steps": 3})
    ship = os.path.join(tmp, "shipped")
    check(pipeline.run_pipeline(cfg, run_dir, until="base", quiet=True), "base failed")
    # a SIGTERM that arrives between stages (no training loop running) stops the run
    os.kill(os.getpid(), signal.SIGTERM)
    check(not pipeline.run_pipeline(cfg, run_dir, ship=ship, quiet=True), "not stopped")
    check("stopped before mlcd" in open(os.path.join(run_dir, "log.txt")).read(), "log")
    check(pipeline.run_pipeline(cfg, run_dir, ship=ship, quiet=True), "pipeline failed")
    for f in ("search/plan.json", "export/base/config.json", "export/tile/model.safetensors",
              "bench/synthbench.md", "bench/sheet.png", "kd/final.pt"):
        check(os.path.exists(os.path.join(run_dir, f)), f"{f} missing")
    c = tl.read_json(os.path.join(ship, "config.json"))
    plan = tl.read_json(os.path.join(run_dir, "search", "plan.json"))["plan"]
    check(c["attention"]["mode"] == "tile" and c["attention"]["plan"] == plan, c["attention"])
    check(c["sampler"]["steps"] == 3 and c["sampler"]["guidance"] == 1, c["sampler"])
    log = open(os.path.join(run_dir, "log.txt")).read()
    check("[kd] start: plan " in log and ", times [1.0, 0.667, 0.333]; " in log, log)
    costs = open(os.path.join(run_dir, "bench", "stages.md")).read()
    check(all(f"| {st} | " in costs for st in ("base", "mlcd", "kd", "SynthBench")) and
          costs.count("| cpu |") == 3 and "| search (engine, CPU) | " in costs, costs)
    md = open(os.path.join(run_dir, "bench", "synthbench.md")).read()
    check(md.count("\n| ") >= 5 and "adaptive" in md, md)
    check("| MLCD few-step, full | 3 | distilled | full |" in md, md)
    check("Differences in points" in md and md.count(" ± ") == 16 and
          "| MLCD few-step, tile + KD (shipped) | MLCD few-step, full |" in md, md)
    # the targets: three scores, two settings against their teachers, the speed-up one
    # clip a process and warm on each timed backend
    targets = md[md.index("Targets:"):]
    check(targets.count("\n| shipped ") == 5 and targets.count(" within ") == 2 and
          "| shipped ≥ 8× the base on cpu (warm) | " in targets and
          all(line.endswith(("| met |", "| **not met** |"))
              for line in targets.splitlines()[4:] if line.startswith("| ")), targets)
    res = tl.read_json(os.path.join(run_dir, "bench", "results.json"))["results"]
    import synthbench  # an override of one score keeps the others
    lowered = "\n".join(synthbench.targets_table(res, {"scores": {"colour": 0.0}}))
    check("| shipped colour ≥ 0.00 | " in lowered and "| shipped shape ≥ 0.85 | " in lowered,
          lowered)
    check(all(r["seeds"] == run["bench"]["seeds"] for r in res) and "2 seeds each" in md, md)
    # a second run finds everything done
    check(pipeline.run_pipeline(cfg, run_dir, quiet=True), "second run")
    lines = open(os.path.join(run_dir, "log.txt")).read().splitlines()
    check(sum("done already" in line for line in lines[-8:]) == 6, lines[-8:])


def case_rehearse(tmp):
    """train/rehearse.py: the pipeline cut down to a few CPU steps a stage, once from
    scratch and once seeded from the first rehearsal's base export (not trained again)."""
    import rehearse
    out = open(os.devnull, "w")
    first = os.path.join(tmp, "first")
    report = rehearse.rehearse(TINY, first, vdit=VDIT, steps=3, batch=2, prompts=2, out=out)
    check([r[0] for r in report] == ["base", "mlcd", "search", "kd", "export", "bench"] and
          all(r[2] > 0 for r in report if r[0] in ("base", "mlcd", "kd")), report)
    run = tl.read_json(os.path.join(first, "run.json"))
    check(run["device"] == "cpu" and run["eval_prompts"] == 2 and run["search"]["prompts"] == 1
          and all(run[st]["steps"] == 3 and run[st]["batch"] == 2 for st in ("base", "mlcd", "kd"))
          and run["bench"]["prompts"] == 2 and run["bench"]["seeds"] == 1, run)
    for st in ("base", "mlcd", "kd"):
        evals = [json.loads(line) for line in open(os.path.join(first, st, "evals.jsonl"))]
        check(len(evals) == 1 and evals[0]["step"] == 3, f"{st}: {evals}")
    check(os.path.exists(os.path.join(first, "export", "tile", "model.safetensors")) and
          "| MLCD few-step, tile + KD (shipped) |" in
          open(os.path.join(first, "bench", "synthbench.md")).read(), "no export or SynthBench")
    second = os.path.join(tmp, "second")
    report = rehearse.rehearse(TINY, second, [os.path.join(first, "export", "base")], VDIT,
                               steps=2, out=out)
    base = tl.stage_done(second, "base")
    check(report[0][2] is None and base["steps"] == 3 and "seeded_from" in base and
          tl.stage_done(second, "mlcd")["steps"] == 2, (report, base))
    mlcd_alone = [os.path.join(first, "export", "mlcd")]  # seeds no run: its base is missing
    for run_dir, models in ((first, []), (os.path.join(tmp, "nowhere", "r"), []),
                            (os.path.join(tmp, "third"), [os.path.join(tmp, "nowhere")]),
                            (os.path.join(tmp, "fourth"), mlcd_alone)):
        try:
            rehearse.rehearse(TINY, run_dir, models, VDIT, out=out)
            check(False, f"rehearsed in {run_dir} from {models}")
        except SystemExit:
            pass
        if run_dir != first:
            check(not os.path.exists(run_dir) and not os.path.exists(run_dir + ".json"),
                  f"{run_dir}: left behind")


CASES = {"data": case_data, "loss": case_loss, "resume": case_resume, "carry": case_carry,
         "stages": case_stages,
         "export": case_export, "seed": case_seed, "pipeline": case_pipeline,
         "rehearse": case_rehearse}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        print(f"usage: {sys.argv[0]} VDIT {{{','.join(CASES)}}}", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="vdit-train-test-")
    try:
        CASES[sys.argv[2]](tmp)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok: {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
