"""What every training stage shares: the run config, the model it implies, batched text,
flow-matching pieces, EMA, the learning-rate schedule, checkpoints and the progress log.

A run lives in one directory (train/runs/NAME by default):
    run.json               the run config used (copied on the first start)
    tokenizer.model        SentencePiece model of the grammar
    log.txt                progress of every stage, appended
    <stage>/ckpt.pt        latest checkpoint of a stage (resume point)
    <stage>/done.json      written when a stage finished, with its results
"""

import cpuenv  # noqa: F401  (before numpy and torch)

import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from vdit_torch import config as config_mod  # noqa: E402
from vdit_torch.dit import set_fast_kernels  # noqa: E402
from vdit_torch.model import VditModel  # noqa: E402
from vdit_torch.samplers import flow_times, latent_to_frames  # noqa: E402,F401
from vdit_torch.tokenize import Tokenizer  # noqa: E402

import synthvideo as sv  # noqa: E402


# ---------------------------------------------------------------- run config

def load_run_config(path):
    """A run config (train/configs/*.json, or RUN/run.json); a missing or broken file is a
    clear error."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such run config") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SystemExit(f"{path}: not a JSON run config ({e})") from None
    cfg.setdefault("threads", 2)
    cfg.setdefault("seed", 1)
    for stage, sec in cfg.items():
        keep = sec.get("keep", "best") if isinstance(sec, dict) else "best"
        if keep not in ("best", "last"):
            raise SystemExit(f"{path}: {stage}.keep is {keep!r}: use \"best\" or \"last\"")
    steps = cfg.get("mlcd", {}).get("sample_steps", 1)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SystemExit(f"{path}: mlcd.sample_steps is {steps!r}: give a whole number of "
                         "steps, at least 1")
    return cfg


def student_sampler(run):
    """(steps, guidance) the few-step student is sampled with: `mlcd.sample_steps` Euler
    steps over its distilled velocity (default one per segment; more follow the
    trajectory more closely at proportional cost) and no CFG, which is distilled in."""
    m = run["mlcd"]
    return int(m.get("sample_steps", m["segments"])), float(m.get("student_guidance", 1.0))


def model_config(run, vocab_size, steps=None, guidance=None, attention=None):
    """The vdit ModelConfig of a run (docs/model-format.md)."""
    v, te, d, s = run["video"], run["text_encoder"], run["dit"], run["sampler"]
    return config_mod.from_dict({
        "format": "vdit", "version": 1, "name": run["name"],
        "video": dict(v),
        "decoder": {"type": "identity", "channels": 3},
        "text_encoder": {"vocab_size": vocab_size, "d_model": te["d_model"],
                         "n_layers": te["n_layers"], "n_heads": te["n_heads"],
                         "d_kv": te["d_kv"], "d_ff": te["d_ff"],
                         "rel_buckets": te.get("rel_buckets", 32),
                         "rel_max_distance": te.get("rel_max_distance", 64),
                         "max_tokens": te.get("max_tokens", 32), "eps": 1e-6},
        "dit": {"hidden": d["hidden"], "depth": d["depth"], "heads": d["heads"],
                "head_dim": d["hidden"] // d["heads"], "patch": d["patch"],
                "in_channels": 3, "ffn_hidden": d["ffn_hidden"],
                "freq_dim": d.get("freq_dim", 128), "rope_theta": d.get("rope_theta", 100.0),
                "rope_scale": [1.0, 1.0, 1.0], "abs_pos": d.get("abs_pos", "none"),
                "eps": 1e-6},
        "sampler": {"type": "flow_euler", "prediction": "flow",
                    "steps": steps or s["steps"],
                    "guidance": s["guidance"] if guidance is None else guidance,
                    "shift": s.get("shift", 1.0)},
        "attention": attention or {"mode": "full", "tile_k": 1},
    })


def load_plan(run_dir):
    """Stage 2's tile k per layer (RUN/search/plan.json)."""
    return read_json(os.path.join(run_dir, "search", "plan.json"))["plan"]


def prepare_run(run_cfg_path, run_dir):
    """Creates the run directory (config copy, tokenizer) or checks it matches."""
    run = load_run_config(run_cfg_path)  # first: a bad config leaves no directory behind
    os.makedirs(run_dir, exist_ok=True)
    saved = os.path.join(run_dir, "run.json")
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            old = json.load(f)
        for key in ("video", "text_encoder", "dit", "tokenizer"):
            if old.get(key) != run.get(key):
                raise SystemExit(f"{run_dir}: run.json differs from {run_cfg_path} in "
                                 f"'{key}'; use another --run-dir")
    with open(saved, "w", encoding="utf-8") as f:
        json.dump(run, f, indent=1)
    tok = os.path.join(run_dir, "tokenizer.model")
    if not os.path.exists(tok):
        t = run.get("tokenizer", {})
        sv.train_tokenizer(tok, t.get("vocab_size", 144), t.get("type", "bpe"))
    return run


def acquire_lock(run_dir):
    """One process per run directory: RUN/lock holds the owner's pid."""
    path = os.path.join(run_dir, "lock")
    if os.path.exists(path):
        try:
            pid = int(open(path).read().strip() or 0)
        except ValueError:
            pid = 0
        if pid and pid != os.getpid():
            try:
                os.kill(pid, 0)
                raise SystemExit(f"{run_dir} is in use by process {pid}")
            except ProcessLookupError:
                pass
    with open(path, "w") as f:
        f.write(str(os.getpid()))


def tokenizer_of(run, run_dir):
    return Tokenizer(os.path.join(run_dir, "tokenizer.model"),
                     run["text_encoder"].get("max_tokens", 32))


def new_model(run, run_dir, seed=0):
    tok = tokenizer_of(run, run_dir)
    cfg = model_config(run, tok.vocab_size)
    return VditModel.from_config(cfg, seed=seed, tokenizer=tok).to(DEVICE)


# ---------------------------------------------------------------- text

class TextBatcher:
    """Prompts → padded ids [B, L] and mask [B, L] (True = real token).  The empty prompt
    is the engine's unconditional input [EOS].  Padding at the end with a key mask gives
    each real token exactly the values of the engine's unpadded computation."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.cache = {}

    def ids(self, prompt):
        if prompt not in self.cache:
            self.cache[prompt] = self.tok.encode_negative("") if prompt == "" \
                else self.tok.encode(prompt)
        return self.cache[prompt]

    def __call__(self, prompts):
        seqs = [self.ids(p) for p in prompts]
        L = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), L, dtype=torch.long)
        mask = torch.zeros(len(seqs), L, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = True
        return ids.to(DEVICE), mask.to(DEVICE)


def velocity(model, x, t, ids, mask, self_masks=None, hidden=None):
    """Model output v for latents x [B, T, H, W, C] at flow times t [B] (τ = 1000·t)."""
    if AMP is not None:
        with torch.autocast(DEVICE.type, dtype=AMP):
            text = model.text_encoder(ids, mask)
            out = model.dit(x, 1000.0 * t, text, mask, self_masks=self_masks, hidden=hidden)
        return out.float()
    text = model.text_encoder(ids, mask)
    return model.dit(x, 1000.0 * t, text, mask, self_masks=self_masks, hidden=hidden)


def guided_velocity(model, x, t, ids, mask, uids, umask, guidance, self_masks=None):
    """u + g·(c − u), both passes in one batch."""
    if guidance <= 1.0:
        return velocity(model, x, t, ids, mask, self_masks)
    L = max(ids.shape[1], uids.shape[1])

    def pad(a, n):
        return torch.nn.functional.pad(a, (0, n - a.shape[1]))
    both_ids = torch.cat([pad(ids, L), pad(uids, L)])
    both_mask = torch.cat([pad(mask, L), pad(umask, L)])
    v = velocity(model, torch.cat([x, x]), torch.cat([t, t]), both_ids, both_mask, self_masks)
    c, u = v.chunk(2)
    return u + guidance * (c - u)


def sample_times(rng, n, mean, std, uniform_frac):
    """Logit-normal flow times (mean > 0 leans towards noise, where layout and motion are
    decided), a fraction drawn uniformly so that no time is starved."""
    t = 1.0 / (1.0 + np.exp(-(mean + std * rng.standard_normal(n))))
    u = rng.random(n)
    t = np.where(rng.random(n) < uniform_frac, u, t)
    return torch.from_numpy(np.clip(t, 1e-4, 1.0).astype(np.float32)).to(DEVICE)


@torch.no_grad()
def sample(model, prompts, batcher, steps, guidance, seed=0, shape=None, shift=1.0,
           self_masks=None, noise=None):
    """flow_euler with guidance for a list of prompts → latents [B, T, H, W, C]."""
    ids, mask = batcher(prompts)
    uids, umask = batcher([""] * len(prompts))
    if noise is None:
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn((len(prompts),) + tuple(shape), generator=g)
    x = noise.to(DEVICE)
    ts = flow_times(steps, shift)
    for k in range(steps):
        t = torch.full((len(prompts),), ts[k], device=DEVICE)
        x = x + (ts[k + 1] - ts[k]) * guided_velocity(model, x, t, ids, mask, uids, umask,
                                                      guidance, self_masks)
    return x


# ---------------------------------------------------------------- optimisation

class EMA:
    """Exponential moving average of a model's parameters (and buffers copied)."""

    def __init__(self, model, decay):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step):
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        # one multi-tensor kernel per op instead of two launches per parameter
        ema = list(self.model.parameters())
        torch._foreach_mul_(ema, d)
        torch._foreach_add_(ema, [p.detach() for p in model.parameters()], alpha=1.0 - d)


def make_optimizer(model, lr, weight_decay):
    """AdamW; no decay on biases, norms, embeddings' scale tables.  On a GPU the fused
    kernel (one launch for every parameter; the same update)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "scale_shift_table" not in name else no_decay).append(p)
    fused = {"fused": True} if DEVICE.type == "cuda" else {}
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.99), eps=1e-8, **fused)


def _rounded(scores):
    """Scores to 4 decimals, dicts of them (shape_by) too, for evals.jsonl."""
    return {k: _rounded(x) if isinstance(x, dict) else round(x, 4) for k, x in scores.items()}


def compile_blocks(log, *models):
    """With VDIT_TRAIN_COMPILE=1 on a GPU: torch.compile each transformer block of the
    models in place (state_dict keys unchanged, so checkpoints and exports are those of
    the eager model).  A block's many small element-wise kernels (modulation, RoPE,
    residuals) fuse; at 0.1 s for the 6.6 TFLOP of a GPU-config step (4.7 in the linear
    layers, 1.9 in attention: 66 TFLOP/s) the eager step is likely bound by them rather than by its GEMMs, and
    train/profile_base_step.py measures whether compiling pays."""
    if os.environ.get("VDIT_TRAIN_COMPILE", "0") != "1" or DEVICE.type != "cuda":
        return
    if not hasattr(torch.nn.Module, "compile"):
        log(f"torch {torch.__version__} has no Module.compile: eager blocks")
        return
    for m in models:
        for block in m.dit.transformer_blocks:
            block.compile()
    log("transformer blocks compiled (VDIT_TRAIN_COMPILE=1)")


def lr_at(step, total, peak, warmup, min_frac, hold=0.0):
    """Linear warm-up, the peak for a `hold` fraction of the remaining steps, then cosine
    decay to min_frac · peak at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    start = warmup + hold * (total - warmup)
    p = min(1.0, max(0.0, step - start) / max(1.0, total - start))
    return peak * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def _restarts(cfg):
    """A stage config's restart phases (one dict or a list of them), in order of "at"."""
    r = cfg.get("restart") or []
    return sorted(r if isinstance(r, list) else [r], key=lambda ph: ph["at"])


def stage_lr(step, total, cfg, warmup, min_lr):
    """A stage's rate at `step` of `total`: lr_at over the stage's steps, or, with
    cfg["restart"] = {"at": S, "lr": P, "warmup": W} (or a list of them), lr_at
    over the first S steps (the schedule the stage first ran with) followed by a second
    warm-up and cosine from P up to the next restart or the end: continuing a finished
    stage re-opens its decay instead of jumping back to the peak of a stretched schedule."""
    phases = [{"at": 0, "lr": cfg["lr"], "warmup": cfg.get("warmup", warmup),
               "hold": cfg.get("hold", 0.0)}] + _restarts(cfg)
    i = max(k for k, ph in enumerate(phases) if step >= ph["at"])
    ph = phases[i]
    end = phases[i + 1]["at"] if i + 1 < len(phases) else total
    return lr_at(step - ph["at"], end - ph["at"], ph["lr"], ph.get("warmup", 200),
                 cfg.get("min_lr", min_lr), ph.get("hold", 0.0))


def phase_cfg(step, cfg):
    """The stage config in force at `step`: past a restart (stage_lr), updated by that
    restart's other keys (e.g. "t_mean"), each restart's on top of the ones before."""
    out = dict(cfg)
    for ph in _restarts(cfg):
        if step >= ph["at"]:
            out.update({k: v for k, v in ph.items() if k not in ("at", "lr", "warmup", "hold")})
    return out


# ---------------------------------------------------------------- checkpoints, log

def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path):
    """A checkpoint of ours (tensors, numbers, RNG states), onto the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # torch without weights_only
        return torch.load(path, map_location="cpu")


def load_model(run, run_dir, path):
    """A VditModel with checkpoint `path`'s EMA weights (or its plain weights), for
    sampling; a missing file is a clear error."""
    if not os.path.exists(path):
        raise SystemExit(f"{path}: no such checkpoint")
    model = new_model(run, run_dir)
    ck = load(path)
    model.load_state_dict(ck["ema"] if "ema" in ck else ck)
    model.eval()
    return model


def load_if_exists(path):
    return load(path) if os.path.exists(path) else None


class Log:
    """Appends timestamped lines to run_dir/log.txt and echoes them."""

    def __init__(self, run_dir, stage, quiet=False):
        self.path = os.path.join(run_dir, "log.txt")
        self.stage, self.quiet = stage, quiet

    def __call__(self, msg):
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{self.stage}] {msg}"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if not self.quiet:
            print(line, flush=True)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rng_state(rng):
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def set_rng_state(rng, state):
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


DEVICE = torch.device("cpu")  # set by set_threads from the run's "device"
AMP = None                    # torch.bfloat16 with "amp": "bf16" on a GPU


def device_name():
    """The GPU's name, or "cpu"."""
    return torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"


ATTENTION_BACKENDS = ("default", "cudnn")


def set_attention_backend(name):
    """Which of PyTorch's fused kernels scaled_dot_product_attention runs on a GPU:
    "default" leaves PyTorch's choice (flash attention for the self-attention);
    "cudnn" (VDIT_TRAIN_SDPA=cudnn) turns the flash and memory-efficient kernels off so
    that cuDNN's fused attention runs, where it can (what it cannot run, such as a mask
    it does not take, falls back to the math kernel). profile_base_step.py times both."""
    if name not in ATTENTION_BACKENDS:
        raise SystemExit(f"VDIT_TRAIN_SDPA={name}: one of {', '.join(ATTENTION_BACKENDS)}")
    if not torch.cuda.is_available() or not hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        return
    default = name == "default"
    torch.backends.cuda.enable_flash_sdp(default)
    torch.backends.cuda.enable_mem_efficient_sdp(default)
    torch.backends.cuda.enable_cudnn_sdp(True)


def set_threads(run):
    """Threads, device ("cpu", "cuda" or "auto"), mixed precision and the fast kernels
    for training."""
    global DEVICE, AMP
    torch.set_num_threads(int(os.environ.get("VDIT_TRAIN_THREADS", run.get("threads", 2))))
    set_fast_kernels(True)
    dev = os.environ.get("VDIT_TRAIN_DEVICE", run.get("device", "cpu"))
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    DEVICE = torch.device(dev)
    AMP = torch.bfloat16 if run.get("amp") == "bf16" and DEVICE.type == "cuda" else None
    set_attention_backend(os.environ.get("VDIT_TRAIN_SDPA", "default"))
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True


# ---------------------------------------------------------------- stopping

# One flag for the process: a SIGTERM/SIGINT that arrives between two stages (during the
# mask search, the export or SynthBench) must stop the run as well as one during training.
_stop = {"requested": False}


def request_stop(*_):
    """Asks the run to save and stop (what SIGTERM and SIGINT do once caught)."""
    _stop["requested"] = True


def catch_stop_signals():
    """From now on SIGTERM and SIGINT ask the run to save and stop (stop_requested)."""
    import signal
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def stop_requested():
    return _stop["requested"]


def clear_stop():
    """The request has been acted on (the run saved and returned)."""
    _stop["requested"] = False


# ---------------------------------------------------------------- the stage loop

class StageLoop:
    """Resumable training loop of one stage: RUN/<stage>/ckpt.pt holds `modules` (name →
    object with state_dict/load_state_dict: models, EMA copies, optimisers), the numpy
    and torch RNG states and the counters; evaluations go to evals.jsonl and the best
    evaluated EMA weights to best.pt; at the end final.pt and done.json.  final.pt holds
    the best evaluated weights, or the last EMA weights when nothing was evaluated or the
    stage's `keep` is "last" (an evaluation of 30 clips cannot rank checkpoints a few
    points apart).  SIGTERM/SIGINT save and stop."""

    def __init__(self, run, run_dir, stage, modules, rng, total, quiet=False):
        self.run, self.run_dir, self.stage = run, run_dir, stage
        self.cfg = run[stage]
        self.dir = os.path.join(run_dir, stage)
        os.makedirs(self.dir, exist_ok=True)
        self.log = Log(run_dir, stage, quiet)
        self.modules, self.rng, self.total = modules, rng, int(total)
        self.state = {"step": 0, "seconds": 0.0, "clips": 0, "best": None}
        self.fresh_from = None  # the step a resume started the optimiser afresh at
        catch_stop_signals()

    def resume(self):
        ck = load_if_exists(os.path.join(self.dir, "ckpt.pt"))
        if ck is None:
            return False
        fresh = False
        for name, m in self.modules.items():
            if name in ck:
                m.load_state_dict(ck[name])
            elif isinstance(m, torch.optim.Optimizer):  # a light pack (run_state.py --light)
                self.log(f"{name}: no optimiser state in the checkpoint; fresh moments, "
                         "the rate warms up again")
                fresh = True
            else:
                raise SystemExit(f"{self.dir}/ckpt.pt has no '{name}'")
        set_rng_state(self.rng, ck["rng"])
        self.state = ck["state"]
        if fresh:
            self.fresh_from = self.state["step"]
        if self.state.pop("carried_light", False) and self.state["best"] is not None:
            # best.pt stayed behind: a later better evaluation replaces the record
            self.log(f"best.pt (step {self.state['best']['step']}) was not carried")
            self.state["best"] = None
        self.log(f"resumed at step {self.state['step']} "
                 f"({self.state['seconds'] / 3600:.2f} h trained)")
        return True

    def continue_finished(self, names):
        """A finished stage run again with more steps on a machine where only its final.pt
        came (a packed run leaves ckpt.pt behind): `names` (the models and EMA copies)
        start from the final EMA weights, the counters from done.json, the optimiser
        afresh. False when there is nothing to continue."""
        done = stage_done(self.run_dir, self.stage)
        final = load_if_exists(os.path.join(self.dir, "final.pt"))
        if done is None or final is None or done["steps"] >= self.total:
            return False
        for name in names:
            self.modules[name].load_state_dict(final["ema"])
        best = done["best"]
        if best is not None and done["kept"] == best["step"]:  # final.pt is that best.pt
            save_atomic({"ema": final["ema"], "eval": {k: v for k, v in best.items()
                                                       if k != "key"}},
                        os.path.join(self.dir, "best.pt"))
        else:
            best = None
        self.state.update(step=done["steps"], clips=done["clips"],
                          seconds=done["hours"] * 3600, best=best)
        self.fresh_from = done["steps"]
        # new data and noise rather than the start's over again
        seed = [int(self.run.get("seed", 1)), int(done["steps"])]
        self.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        torch.manual_seed(seed[0] * 1_000_003 + seed[1])
        self.log(f"continued from the step-{done['kept']} final weights of the finished "
                 f"stage (step {done['steps']} of {self.total}; fresh optimiser state)")
        return True

    def set_rate(self, opt, step, warmup, min_lr):
        """Sets the stage's rate at `step` (stage_lr; `warmup` and `min_lr` are the
        stage's defaults) on `opt` and returns it.  After a resume with fresh optimiser
        moments the rate ramps up again over `rewarm` steps (by default the stage's
        warm-up, at most 100): Adam's first steps move every weight by about the whole
        rate, whatever the weight's gradient noise."""
        lr = stage_lr(step, self.total, self.cfg, warmup, min_lr)
        if self.fresh_from is not None:
            n = int(self.cfg.get("rewarm", min(100, self.cfg.get("warmup", warmup))))
            lr *= min(1.0, (step - self.fresh_from + 1) / max(1, n))
        for g in opt.param_groups:
            g["lr"] = lr
        return lr

    def save(self):
        ck = {name: m.state_dict() for name, m in self.modules.items()}
        ck.update(rng=rng_state(self.rng), state=self.state)
        save_atomic(ck, os.path.join(self.dir, "ckpt.pt"))

    def evaluate(self, eval_fn, ema_model):
        t0 = time.time()
        s = eval_fn()
        st = self.state
        rec = {"step": st["step"], "hours": round(st["seconds"] / 3600, 3),
               "clips": st["clips"], **_rounded(s),
               "eval_s": round(time.time() - t0, 1)}
        with open(os.path.join(self.dir, "evals.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        key = s["colour"] + s["shape"] + 2 * s["motion"]
        if st["best"] is None or key >= st["best"]["key"]:
            st["best"] = {"key": key, **rec}
            save_atomic({"ema": ema_model.state_dict(), "eval": rec},
                        os.path.join(self.dir, "best.pt"))
        self.log(f"eval step {st['step']}: colour {s['colour']:.2f} shape {s['shape']:.2f} "
                 f"motion {s['motion']:.2f} consistency {s['consistency']:.2f} "
                 + "".join(f"{k} {v:.2f} " for k, v in s.get("shape_by", {}).items())
                 + f"({time.time() - t0:.0f} s)")

    def loop(self, step_fn, eval_fn, ema_model, batch):
        """step_fn(step) → (loss float, extra log text); returns the result dict, or None
        when stopped early."""
        cfg, st = self.cfg, self.state
        losses, t_last, last_save = [], time.time(), time.time()
        if st["step"] == 0 and eval_fn is not None and cfg.get("eval_at_start", False):
            self.evaluate(eval_fn, ema_model)
        while st["step"] < self.total and not stop_requested():
            t0 = time.time()
            loss, extra = step_fn(st["step"])
            if loss is None:
                continue
            st["step"] += 1
            st["clips"] += batch
            st["seconds"] += time.time() - t0
            losses.append(loss)
            if st["step"] % cfg.get("log_every", 20) == 0 or st["step"] == self.total:
                dt = (time.time() - t_last) / len(losses)
                self.log(f"step {st['step']}/{self.total} loss {np.mean(losses):.4f} {extra} "
                         f"{dt:.2f} s/step clips {st['clips']} {st['seconds'] / 3600:.2f} h")
                losses, t_last = [], time.time()
            if eval_fn is not None and (st["step"] % cfg.get("eval_every", 1000) == 0 or
                                        st["step"] == self.total):
                self.evaluate(eval_fn, ema_model)
                self.save()
                last_save = time.time()
            elif st["step"] % cfg.get("ckpt_every", 100) == 0 or \
                    time.time() - last_save > 600:
                self.save()
                last_save = time.time()
        self.save()
        if st["step"] < self.total:
            clear_stop()
            self.log(f"stopped at step {st['step']}; run the same command to resume")
            return None
        keep_best = self.cfg.get("keep", "best") == "best"
        best = load_if_exists(os.path.join(self.dir, "best.pt")) if keep_best else None
        save_atomic({"ema": best["ema"] if best else ema_model.state_dict()},
                    os.path.join(self.dir, "final.pt"))
        kept = best["eval"]["step"] if best else st["step"]
        result = {"steps": st["step"], "hours": st["seconds"] / 3600, "clips": st["clips"],
                  "best": st["best"], "kept": kept, "device": device_name()}
        write_json(os.path.join(self.dir, "done.json"), result)
        self.log(f"done: best eval {json.dumps(st['best'])}; final.pt holds the step-{kept} "
                 "weights")
        return result


def stage_done(run_dir, stage):
    p = os.path.join(run_dir, stage, "done.json")
    return read_json(p) if os.path.exists(p) else None


# ---------------------------------------------------------------- the engine

def find_vdit(explicit=None):
    """The `vdit` program: explicit, $VDIT, build-train/, build/, any build*/, PATH."""
    import glob
    import shutil
    cands = [explicit, os.environ.get("VDIT"), os.path.join(ROOT, "build-train", "tools", "vdit"),
             os.path.join(ROOT, "build", "tools", "vdit")]
    cands += sorted(glob.glob(os.path.join(ROOT, "build*", "tools", "vdit")))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which("vdit")
    if found:
        return found
    raise SystemExit("no vdit program found: build it (meson compile -C build) or pass --vdit")


def stage_main(doc, stage, run_stage):
    """The command line of a trained stage: --config, --run-dir, --steps."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--steps", type=int, help=f"override {stage}.steps")
    a = ap.parse_args()
    run = prepare_run(a.config, a.run_dir)
    acquire_lock(a.run_dir)
    run_stage(run, a.run_dir, a.steps)


def optimizer_step(loss, model, opt, ema, step, clip, log):
    """Backward, gradient clipping, update and EMA; returns the gradient norm, or None
    (and skips the update) when the loss or the gradient is not finite."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if not (torch.isfinite(loss) and torch.isfinite(gn)):
        log(f"step {step}: non-finite loss or gradient, step skipped")
        return None
    opt.step()
    ema.update(model, step)
    return float(gn)
