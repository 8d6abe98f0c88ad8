#!/usr/bin/python3
"""Stage 1, MLCD (multi-step latent consistency distillation): a few-step student from
the base model.

The flow trajectory from t = 1 (noise) to 0 is split into `segments` pieces at the
engine's flow_euler times for that many steps (b_0 = 1 > b_1 > … > b_S = 0), each piece
into `substeps` grid points.  For a noised clip x_t at a grid time t of segment i, the
student predicts the point of the trajectory at the segment's end b_{i+1} with one
Euler jump, x_t + (b_{i+1} − t)·v_θ(x_t, t) — exactly what the engine's flow_euler does
with `segments` steps.  The target: the teacher (base EMA weights, classifier-free
guidance `guidance`) runs up to `teacher_steps` Euler sub-steps from t; if it reaches
b_{i+1} that point is the target, otherwise the student (no gradient) jumps the rest
of the way from where the teacher stopped (the consistency target).  With
`teacher_steps` ≥ `substeps` the teacher always reaches b_{i+1}; a grid as fine as the
teacher's own sampler (segments × substeps = sampler steps) then gives targets at its
resolution, which the shipped config uses (docs/training.md, item 9).  Loss: pseudo-Huber
of the difference in velocity units, (x̂ − target)/(t − b_{i+1}), with the base stage's
foreground weighting (`fg_weight`).  Guidance is distilled
in: the student is sampled with guidance 1 (one pass per step), with `sample_steps`
Euler steps (default `segments`; the shipped config takes 8 over 4 segments, which
keeps shape closer to the teacher's: docs/training.md, item 10).

    /usr/bin/python3 train/stage_mlcd.py --config train/configs/cpu.json --run-dir DIR
"""

import cpuenv  # noqa: F401  (before numpy and torch)
import copy

import numpy as np
import torch

import trainlib as tl
from export import stage_model
from stage_base import evaluate, flow_batch, foreground_weight


def segment_grid(segments, substeps, shift):
    """Segment boundaries b (segments + 1 values) and the grid times of each segment
    ([segments, substeps + 1], from its start down to its end)."""
    b = tl.flow_times(segments, shift)
    grid = np.array([[b[i] + (b[i + 1] - b[i]) * j / substeps for j in range(substeps + 1)]
                     for i in range(segments)], dtype=np.float64)
    return b, grid


def teacher_and_student(run, run_dir, stage):
    """A stage's final weights twice: a frozen teacher and a trainable student."""
    teacher = stage_model(run, run_dir, stage)
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = copy.deepcopy(teacher).train()
    for p in student.parameters():
        p.requires_grad_(True)
    return teacher, student


def run_stage(run, run_dir, max_steps=None, quiet=False):
    tl.set_threads(run)
    cfg = run["mlcd"]
    total = int(max_steps or cfg["steps"])
    teacher, student = teacher_and_student(run, run_dir, "base")
    ema = tl.EMA(student, cfg.get("ema", 0.995))
    opt = tl.make_optimizer(student, cfg["lr"], cfg.get("weight_decay", 0.0))
    rng = np.random.default_rng(run["seed"] + 1)
    loop = tl.StageLoop(run, run_dir, "mlcd", {"model": student, "ema": ema.model, "opt": opt},
                        rng, total, quiet)
    S, N = int(cfg["segments"]), int(cfg["substeps"])
    K = int(cfg.get("teacher_steps", 1))
    g = float(cfg.get("guidance", run["sampler"]["guidance"]))
    b, grid = segment_grid(S, N, run["sampler"].get("shift", 1.0))
    if not loop.resume():
        loop.log(f"start: {S} segments at t = {[round(x, 3) for x in b]}, {N} sub-steps, "
                 f"teacher {K} step(s) with guidance {g}; {total} steps of batch "
                 f"{cfg['batch']}")
    tl.compile_blocks(loop.log, teacher, student)
    batcher = tl.TextBatcher(teacher.tokenizer)
    B = int(cfg["batch"])
    c = float(cfg.get("huber", 0.02))
    p_start = float(cfg.get("start_fraction", 0.3))

    def step(it):
        lr = loop.set_rate(opt, it, 100, 0.2)
        x0, prompts, eps = flow_batch(rng, run, B)
        ids, mask = batcher(prompts)
        uids, umask = batcher([""] * B)
        seg = rng.integers(0, S, B)
        # Segment starts are where the sampler asks; the rest of the grid carries the
        # consistency chain.
        j = np.where(rng.random(B) < p_start, 0, rng.integers(0, N, B))
        dev = tl.DEVICE
        t = torch.tensor(grid[seg, j], dtype=torch.float32, device=dev)
        end = torch.tensor([b[s + 1] for s in seg], dtype=torch.float32, device=dev)
        tt = t[:, None, None, None, None]
        xt = (1 - tt) * x0 + tt * eps
        with torch.no_grad():
            x, jj = xt.clone(), j.copy()
            for _ in range(K):  # teacher Euler sub-steps with guidance
                live = jj < N
                if not live.any():
                    break
                idx = torch.from_numpy(np.nonzero(live)[0]).to(dev)
                tc = torch.tensor(grid[seg[live], jj[live]], dtype=torch.float32, device=dev)
                tn = torch.tensor(grid[seg[live], jj[live] + 1], dtype=torch.float32,
                                  device=dev)
                v = tl.guided_velocity(teacher, x[idx], tc, ids[idx], mask[idx], uids[idx],
                                       umask[idx], g)
                x[idx] = x[idx] + (tn - tc)[:, None, None, None, None] * v
                jj[live] += 1
            target = x
            rest = jj < N
            if rest.any():  # consistency target: the student from where the teacher stopped
                idx = torch.from_numpy(np.nonzero(rest)[0]).to(dev)
                tm = torch.tensor(grid[seg[rest], jj[rest]], dtype=torch.float32, device=dev)
                student.eval()
                vs = tl.velocity(student, x[idx], tm, ids[idx], mask[idx])
                target[idx] = x[idx] + (end[idx] - tm)[:, None, None, None, None] * vs
        student.train()
        v = tl.velocity(student, xt, t, ids, mask)
        span = (t - end)[:, None, None, None, None]
        pred = xt - span * v
        d = (pred - target) / span
        # Weighted like the base loss: the objects carry the motion, which the jumps of a
        # few-step sampler lose first.
        fw = foreground_weight(x0, cfg.get("fg_weight", 0.0))
        loss = ((torch.sqrt(d * d + c * c) - c).mean(-1) * fw).sum() / fw.sum()
        gn = tl.optimizer_step(loss, student, opt, ema, it, cfg.get("clip", 1.0), loop.log)
        if gn is None:
            return None, ""
        return float(loss), f"lr {lr:.2e} gnorm {gn:.2f}"

    def eval_fn():
        return evaluate(ema.model, run, batcher, *tl.student_sampler(run))

    return loop.loop(step, eval_fn, ema.model, B)


if __name__ == "__main__":
    tl.stage_main(__doc__, "mlcd", run_stage)
