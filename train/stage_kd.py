#!/usr/bin/python3
"""Stage 3: layer-wise knowledge distillation of the tile-sparse student from the dense
MLCD model.

The student starts from the MLCD weights and runs every self-attention with its layer's
k:(T−k) tile mask from the plan of stage 2 (RUN/search/plan.json); the teacher is the
same MLCD model with full attention.  Inputs are noised clips at the few-step sampler's
times (where the engine evaluates the model: tl.student_sampler) and, for a fraction, at
uniform times.  Loss: each block's output against the teacher's (normalised by the
teacher's mean square, weighted by `layer_weight`) plus the final velocity.

    /usr/bin/python3 train/stage_kd.py --config train/configs/cpu.json --run-dir DIR
"""

import cpuenv  # noqa: F401  (before numpy and torch)

import numpy as np
import torch

import trainlib as tl
from stage_base import evaluate, flow_batch
from stage_mlcd import teacher_and_student
from vdit_torch.tile_mask import plan_masks


def grid_of(run):
    v, p = run["video"], run["dit"]["patch"]
    return v["frames"] // p[0], v["height"] // p[1], v["width"] // p[2]


def run_stage(run, run_dir, max_steps=None, quiet=False):
    tl.set_threads(run)
    cfg = run["kd"]
    total = int(max_steps or cfg["steps"])
    teacher, student = teacher_and_student(run, run_dir, "mlcd")
    plan = tl.load_plan(run_dir)
    masks = [m if m is None else m.to(tl.DEVICE) for m in plan_masks(plan, grid_of(run))]
    ema = tl.EMA(student, cfg.get("ema", 0.999))
    opt = tl.make_optimizer(student, cfg["lr"], cfg.get("weight_decay", 0.0))
    rng = np.random.default_rng(run["seed"] + 2)
    loop = tl.StageLoop(run, run_dir, "kd", {"model": student, "ema": ema.model, "opt": opt},
                        rng, total, quiet)
    S, guidance = tl.student_sampler(run)
    starts = tl.flow_times(S, run["sampler"].get("shift", 1.0))[:-1]
    if not loop.resume():
        loop.log(f"start: plan {plan}, times {[round(t, 3) for t in starts]}; {total} steps "
                 f"of batch {cfg['batch']}")
    tl.compile_blocks(loop.log, teacher, student)
    batcher = tl.TextBatcher(teacher.tokenizer)
    B = int(cfg["batch"])
    w = float(cfg.get("layer_weight", 1.0))

    def step(it):
        lr = loop.set_rate(opt, it, 50, 0.2)
        x0, prompts, eps = flow_batch(rng, run, B)
        ids, mask = batcher(prompts)
        t = np.array(starts)[rng.integers(0, S, B)]
        t = np.where(rng.random(B) < cfg.get("uniform_fraction", 0.2), rng.random(B), t)
        t = torch.tensor(t, dtype=torch.float32, device=tl.DEVICE)
        tt = t[:, None, None, None, None]
        xt = (1 - tt) * x0 + tt * eps
        with torch.no_grad():
            th = []
            tv = tl.velocity(teacher, xt, t, ids, mask, hidden=th)
        sh = []
        sv_ = tl.velocity(student, xt, t, ids, mask, self_masks=masks, hidden=sh)
        layer = sum(((a - b) ** 2).mean() / (b ** 2).mean().clamp_min(1e-6)
                    for a, b in zip(sh, th)) / len(th)
        final = ((sv_ - tv) ** 2).mean()
        loss = w * layer + final
        gn = tl.optimizer_step(loss, student, opt, ema, it, cfg.get("clip", 1.0), loop.log)
        if gn is None:
            return None, ""
        return float(loss), f"layers {float(layer):.4f} final {float(final):.4f} lr {lr:.2e}"

    def eval_fn():
        return evaluate(ema.model, run, batcher, S, guidance, self_masks=masks)

    return loop.loop(step, eval_fn, ema.model, B)


if __name__ == "__main__":
    tl.stage_main(__doc__, "kd", run_stage)
