#!/usr/bin/python3
"""Base training: text encoder + DiT on SynthVideo with flow matching (the engine's
flow_euler sampler), CFG dropout, logit-normal times, AdamW with warm-up and cosine
decay, gradient clipping and EMA weights.  Resumable: the latest state is in
RUN/base/ckpt.pt; the EMA weights are evaluated on the held-out prompts every
`eval_every` steps (RUN/base/evals.jsonl) and the best of them is RUN/base/best.pt;
RUN/base/final.pt is what the next stages start from.

    /usr/bin/python3 train/stage_base.py --config train/configs/cpu.json --run-dir DIR
"""

import cpuenv  # noqa: F401  (before numpy and torch)

import numpy as np
import torch

import trainlib as tl
import synthvideo as sv
import synthmetrics as sm


def evaluate(model, run, batcher, steps, guidance, seed=1000, prompts=None, self_masks=None,
             return_clips=False):
    """Samples the held-out prompts (the first `eval_prompts` of the run config, default
    all) in PyTorch; returns SynthBench-style scores."""
    prompts = prompts or sv.heldout_prompts()[:run.get("eval_prompts")]
    v = run["video"]
    shape = (v["frames"], v["height"], v["width"], 3)
    results, clips = [], []
    model.eval()
    for i in range(0, len(prompts), 16):
        chunk = prompts[i:i + 16]
        x = tl.sample(model, [p for p, _ in chunk], batcher, steps, guidance, seed=seed + i,
                      shape=shape, shift=run["sampler"].get("shift", 1.0),
                      self_masks=self_masks)
        for (p, combo), clip in zip(chunk, x):
            frames = tl.latent_to_frames(clip)
            results.append((sm.analyse(frames), combo))
            clips.append(frames)
    scores = sm.score(results)
    return (scores, clips) if return_clips else scores


def flow_batch(rng, run, batch):
    """(x0 [B, T, H, W, 3], prompts, noise) from SynthVideo."""
    v = run["video"]
    x0, prompts = sv.batch(rng, batch, v["frames"], v["height"], v["width"],
                           run.get("data", {}).get("two_object_prob", 0.0),
                           device=tl.DEVICE, as_torch=True)
    if tl.DEVICE.type == "cpu":  # numpy noise: resumes reproduce it exactly
        eps = torch.from_numpy(rng.standard_normal(tuple(x0.shape)).astype(np.float32))
    else:
        eps = torch.randn(x0.shape, device=tl.DEVICE)
    return x0, prompts, eps


def foreground_weight(x0, fg_weight):
    """Per-pixel loss weights [B, T, H, W]: 1 + fg_weight where the clip differs from its
    background.  The objects carry every attribute a prompt names besides the background
    but cover about a tenth of the frame; weighting them spends more of a small model's
    updates on colour, shape and motion.  The background colour is the median of the
    first frame's corners, which an object seldom covers."""
    if not fg_weight:
        return torch.ones(x0.shape[:-1], device=x0.device)
    corners = x0[:, 0][:, [0, 0, -1, -1], [0, -1, 0, -1]]            # [B, 4, 3]
    bg = corners.median(dim=1).values[:, None, None, None, :]
    fg = ((x0 - bg).abs().sum(-1) > 0.1).float()
    return 1.0 + fg_weight * fg


def training_batch(rng, run, batcher, B, cfg=None):
    """A base-training batch: clips x0, noise, caption ids and mask (each caption dropped
    to the empty prompt with probability cfg_dropout), flow times t; cfg: the base config
    in force (tl.phase_cfg), run["base"] by default."""
    cfg = cfg or run["base"]
    x0, prompts, eps = flow_batch(rng, run, B)
    drop = rng.random(B) < cfg.get("cfg_dropout", 0.1)
    ids, mask = batcher(["" if d else p for p, d in zip(prompts, drop)])
    t = tl.sample_times(rng, B, cfg.get("t_mean", 0.0), cfg.get("t_std", 1.0),
                        cfg.get("t_uniform", 0.1))
    return x0, eps, ids, mask, t


def flow_loss(model, run, x0, eps, ids, mask, t):
    """The foreground-weighted flow-matching loss of a training_batch."""
    tt = t[:, None, None, None, None]
    pred = tl.velocity(model, (1 - tt) * x0 + tt * eps, t, ids, mask)
    err = ((pred - (eps - x0)) ** 2).mean(-1)
    w = foreground_weight(x0, run["base"].get("fg_weight", 0.0))
    return (err * w).sum() / w.sum()


def run_stage(run, run_dir, max_steps=None, quiet=False):
    tl.set_threads(run)
    cfg = run["base"]
    total = int(max_steps or cfg["steps"])
    model = tl.new_model(run, run_dir, seed=run["seed"])
    ema = tl.EMA(model, cfg.get("ema", 0.999))
    opt = tl.make_optimizer(model, cfg["lr"], cfg.get("weight_decay", 0.01))
    rng = np.random.default_rng(run["seed"])
    torch.manual_seed(run["seed"])
    loop = tl.StageLoop(run, run_dir, "base", {"model": model, "ema": ema.model, "opt": opt},
                        rng, total, quiet)
    if not loop.resume() and not loop.continue_finished(["model", "ema"]):
        n = sum(p.numel() for p in model.parameters())
        loop.log(f"start: {n / 1e6:.2f} M parameters, {total} steps of batch {cfg['batch']}")
    tl.compile_blocks(loop.log, model)
    batcher = tl.TextBatcher(model.tokenizer)
    B = int(cfg["batch"])

    def step(i):
        lr = loop.set_rate(opt, i, 200, 0.1)
        model.train()
        batch = training_batch(rng, run, batcher, B, tl.phase_cfg(i, cfg))
        loss = flow_loss(model, run, *batch)
        gn = tl.optimizer_step(loss, model, opt, ema, i, cfg.get("clip", 1.0), loop.log)
        if gn is None:
            return None, ""
        return float(loss.detach()), f"lr {lr:.2e} gnorm {gn:.2f}"

    def eval_fn():
        return evaluate(ema.model, run, batcher, cfg.get("eval_steps", 16),
                        run["sampler"]["guidance"])

    return loop.loop(step, eval_fn, ema.model, B)


if __name__ == "__main__":
    tl.stage_main(__doc__, "base", run_stage)
