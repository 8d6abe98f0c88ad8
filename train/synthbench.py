#!/usr/bin/python3
"""SynthBench: held-out SynthVideo prompts rendered by the C engine (`vdit generate`, PNG
frames), judged from the frames alone (synthmetrics.py): object colour, shape class,
motion direction from the centroid track (left/right/up/down prompts), frame-to-frame
consistency; with the engine's wall time per clip (process start to exit, model load
included).  Prints a Markdown table.

    # the standard rows of a pipeline run (RUN/export/{base,mlcd,tile})
    /usr/bin/python3 train/synthbench.py --run-dir train/runs/cpu
    # any models: NAME=DIR[,attention=MODE][,steps=S][,guidance=G]
    /usr/bin/python3 train/synthbench.py --row "tiny=models/tiny,steps=2"
    # clips on the CUDA backend, four engine processes at a time, then a timing pass
    /usr/bin/python3 train/synthbench.py --run-dir RUN --device cuda --jobs 4 --timing cuda
    # each standard row's time per clip on two CPU threads, no scores
    /usr/bin/python3 train/synthbench.py --run-dir RUN --timing-only --timing cpu
"""

import cpuenv  # noqa: F401  (before numpy)
import argparse
import concurrent.futures
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter

import numpy as np

import plotpng
import pngio
import run_costs
import synthmetrics as sm
import synthvideo as sv
import trainlib as tl


def parse_row(text):
    name, _, rest = text.partition("=")
    parts = rest.split(",")
    row = {"name": name, "model": parts[0]}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        row[k] = v
    return row


BASE, STUDENT = "base, many steps, full", "MLCD few-step, full"
SHIPPED = "MLCD few-step, tile + KD (shipped)"
# the shipped model's bar (docs/training.md): its scores, how far each distilled setting
# may fall below the one it comes from, and its speed over the base's many guided steps
TARGETS = {"scores": {"colour": 0.95, "shape": 0.85, "motion": 0.85},
           "below": [[STUDENT, BASE, 3.0], [SHIPPED, STUDENT, 2.0]], "speedup": 8.0}


def standard_rows(run_dir):
    """The four settings of the method, plus the tile mask without layer-wise
    distillation; each judged against its teacher ("against")."""
    e = os.path.join(run_dir, "export")
    return [
        {"name": BASE, "model": os.path.join(e, "base")},
        {"name": STUDENT, "model": os.path.join(e, "mlcd"), "against": BASE},
        {"name": "MLCD few-step, tile (plan, no KD)", "model": os.path.join(e, "mlcd"),
         "attention": "tile", "against": STUDENT},
        {"name": SHIPPED, "model": os.path.join(e, "tile"), "against": STUDENT},
        {"name": "base, many steps, adaptive", "model": os.path.join(e, "base"),
         "attention": "adaptive", "against": BASE},
    ]


def row_settings(row):
    """(steps, guidance, attention mode) of a row: its model's config.json, overridden by
    the row's own keys."""
    c = tl.read_json(os.path.join(row["model"], "config.json"))
    return (int(row.get("steps") or c["sampler"]["steps"]),
            float(row.get("guidance") or c["sampler"]["guidance"]),
            row.get("attention") or c["attention"]["mode"])


def _setting_cells(name, steps, guidance, mode):
    """The first four cells of a table row: setting, steps, CFG, attention."""
    cfg = f"{guidance:g}" if guidance > 1 else "distilled"
    return f"| {name} | {steps} | {cfg} | {mode} | "


def row_options(row):
    """The engine's options for what a row overrides of its model's config."""
    return [arg for key in ("attention", "steps", "guidance") if row.get(key)
            for arg in ("--" + key, str(row[key]))]


def generate(exe, row, prompt, seed, threads, out, device="cpu"):
    cmd = [exe, "generate", "--model", row["model"], "--prompt", prompt, "--seed", str(seed),
           "--out", out + "/", "--threads", str(threads), "--device", device, "-q"]
    cmd += row_options(row)
    shutil.rmtree(out, ignore_errors=True)
    stats = out + ".stats.jsonl"
    if os.path.exists(stats):
        os.remove(stats)
    cmd.append("--stats=" + stats)
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    names = sorted(n for n in os.listdir(out) if n.endswith(".png"))
    with open(stats, encoding="utf-8") as f:
        line = json.loads(f.read().splitlines()[-1])
    frames = np.stack([pngio.read_png(os.path.join(out, n)) for n in names])
    return frames, {"wall": dt, "run": line["run_ms"] / 1e3, "stats": line}


WARM_REPEAT = 2


def add_warm_time(times, exe, row, prompt, seed, threads, device="cpu"):
    """times["warm"]: `vdit bench clip`'s seconds of a clip in a process that has made one
    already (the mean of WARM_REPEAT after a first), and times["warm_line"] its JSON line;
    False once a stop is requested."""
    if tl.stop_requested():
        return False
    cmd = [exe, "bench", "clip", "--model", row["model"], "--prompt", prompt, "--seed",
           str(seed), "--threads", str(threads), "--device", device,
           "--repeat", str(WARM_REPEAT), "--warmup", "1"] + row_options(row)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if tl.stop_requested():  # the signal reached the engine too
        return False
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    times["warm_line"] = json.loads(proc.stdout.splitlines()[-1])
    times["warm"] = times["warm_line"]["ms"] / 1e3
    return True


def mean_times(times):
    """{"wall", "run"} means of a list of generate() times, and each clip's --stats line
    (load, text, denoising and decoding times, each step's)."""
    m = {k: float(np.mean([t[k] for t in times])) for k in ("wall", "run")}
    m["stats"] = [t["stats"] for t in times]
    return m


def bench(rows, exe, n_prompts=30, threads=2, seed=100, log=print, keep=6, seeds=1,
          device="cpu", jobs=1, timing=None, timing_prompts=3):
    """Runs every row over the first n held-out prompts, `seeds` clips of each (one
    prompt is 4 points of the motion score: more seeds make a few points mean
    something) on `device`, `jobs` engine processes at a time; returns (results, clips)
    with clips[row name] = the first `keep` clips of the first seed (uint8), or
    (None, None) once a stop is requested.

    Each result's "timing" maps a device to the mean times of a clip there: "run", the
    engine's own from prompt to last frame with the model loaded (what a running
    vditsrc spends on a clip), and "wall", the process's from start to exit.  With one
    job and no `timing` they are means over the scored clips; otherwise (clips run side
    by side share the machine) each device of `timing` ("cpu", "cuda") gets its own pass
    over the first `timing_prompts` prompts, one clip at a time."""
    if seeds < 1 or n_prompts < 1 or jobs < 1:
        raise SystemExit(f"synthbench: {n_prompts} prompts × {seeds} seeds, {jobs} jobs: "
                         "each must be at least 1")
    prompts = sv.heldout_prompts()[:n_prompts]
    if timing is None and jobs > 1:
        timing = [device]
    results, clips = [], {}
    tmp = tempfile.mkdtemp(prefix="synthbench-")
    try:
        for row in rows:
            steps, guidance, mode = row_settings(row)
            work = list(itertools.product(range(seeds), range(len(prompts))))

            def one(k):
                if tl.stop_requested():  # the pipeline asked to stop: nothing is kept
                    return None
                j, i = work[k]
                return generate(exe, row, prompts[i][0], seed + 1000 * j + i, threads,
                                os.path.join(tmp, f"clip{k}"), device)

            with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
                made = list(pool.map(one, range(len(work))))
            if any(m is None for m in made):
                return None, None
            scored = [(sm.analyse(f), prompts[i][1]) for (f, _), (_, i) in zip(made, work)]
            clips[row["name"]] = [f for (f, _), (j, i) in zip(made, work)
                                  if j == 0 and i < keep]
            if timing:
                times = time_row(row, exe, prompts[:timing_prompts], timing, threads, seed,
                                 tmp)
                if times is None:
                    return None, None
            else:
                times = {device: mean_times([t for _, t in made])}
                if not add_warm_time(times[device], exe, row, prompts[0][0], seed, threads,
                                     device):
                    return None, None
            s = sm.score(scored)
            r = {"name": row["name"], "model": row["model"], "steps": steps,
                 "guidance": guidance, "attention": mode, "prompts": len(prompts),
                 "seeds": seeds, "against": row.get("against"), "device": device,
                 "threads": threads, "timing": times, "timing_clips": None if not timing
                 else min(timing_prompts, len(work)),
                 "seconds": next(iter(times.values()))["run"], **s,
                 "per_clip": sm.per_clip(scored)}
            results.append(r)
            log(f"{row['name']}: colour {s['colour']:.2f} shape {s['shape']:.2f} motion "
                f"{s['motion']:.2f} consistency {s['consistency']:.2f}, " +
                ", ".join(f"{t['run']:.2f} s/clip ({d})" for d, t in times.items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results, clips


def time_row(row, exe, prompts, devices, threads, seed, tmp):
    """{device: mean_times of a clip} over the prompts (the first seed), one clip at a
    time on each device, with "warm" (add_warm_time, the first prompt); None once a stop is
    requested."""
    times = {}
    for dev in devices:
        dts = []
        for i, (p, _) in enumerate(prompts):
            if tl.stop_requested():
                return None
            dts.append(generate(exe, row, p, seed + i, threads, os.path.join(tmp, "timed"),
                                dev)[1])
        times[dev] = mean_times(dts)
        if not add_warm_time(times[dev], exe, row, prompts[0][0], seed, threads, dev):
            return None
    return times


def timing_table(rows, exe, devices, n_prompts=3, threads=2, seed=100):
    """Markdown table of each row's times per clip on each device, without scores (the
    engine's speed does not depend on what the clips show)."""
    prompts = sv.heldout_prompts()[:n_prompts]
    tmp = tempfile.mkdtemp(prefix="synthbench-")
    try:
        times = [time_row(r, exe, prompts, devices, threads, seed, tmp) for r in rows]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = ["| setting | steps | CFG | attention | " + _time_heads(devices, threads) + " |",
             "|---|---|---|---|" + "---|" * TIME_COLUMNS * len(devices)]
    for r, t in zip(rows, times):
        lines.append(_setting_cells(r["name"], *row_settings(r)) +
                     _time_cells(t, times[0], devices) + " |")
    lines += ["", _time_note(devices) + f", one clip at a time over the first "
              f"{len(prompts)} held-out prompts."]
    return "\n".join(lines) + "\n"


TIME_COLUMNS = 5


def _time_heads(devices, threads):
    def label(d):
        return f"{d}, {threads} thr" if d == "cpu" else d
    return " | ".join(f"s/clip ({label(d)}) | speed-up | with load | warm s/clip | warm "
                      "speed-up" for d in devices)


def _time_cells(t, ref, devices):
    return " | ".join(f"{t[d]['run']:.2f} | {ref[d]['run'] / t[d]['run']:.1f}x | "
                      f"{ref[d]['wall'] / t[d]['wall']:.1f}x | {t[d]['warm']:.3f} | "
                      f"{ref[d]['warm'] / max(t[d]['warm'], 1e-6):.1f}x" for d in devices)


BACKENDS = {"cpu": "the CPU backend", "cuda": "the CUDA backend"}


def _time_note(devices):
    return ("Seconds a clip on " + " and ".join(BACKENDS[d] for d in devices) + ": the "
            "engine's own time from prompt to last frame with the model loaded, in a "
            "process that makes that one clip (`vdit generate`); \"with load\" is the "
            "speed-up in the process's wall time, start and model load included; \"warm\" "
            f"is a clip after the first in one process (`vdit bench clip`: the mean of "
            f"{WARM_REPEAT} after one, frames kept in memory), as an application that "
            "renders clip after clip pays")


def table(results, threads, targets=None):
    devs = list(results[0]["timing"]) if results else []
    ref = results[0]["timing"] if results else {}
    lines = ["| setting | steps | CFG | attention | colour | shape | motion | consistency | "
             + _time_heads(devs, threads) + " |",
             "|---|---|---|---|---|---|---|---|" + "---|" * TIME_COLUMNS * len(devs)]
    for r in results:
        lines.append(_setting_cells(r["name"], r["steps"], r["guidance"], r["attention"]) +
                     f"{r['colour']:.2f} | {r['shape']:.2f} | {r['motion']:.2f} | "
                     f"{r['consistency']:.2f} | " + _time_cells(r["timing"], ref, devs) + " |")
    n = results[0]["prompts"] if results else 0
    seeds = results[0].get("seeds", 1) if results else 1
    dirs = sum(1 for _, c in sv.heldout_prompts()[:n] if c[2] in sv.DIRECTIONS)
    r0 = results[0] if results else {}
    made = BACKENDS[r0.get("device", "cpu")]
    lines.append("")
    lines.append(f"{n} held-out prompts ({dirs} with a direction for the motion column), "
                 f"{seeds} seed{'s' if seeds > 1 else ''} each, made on {made}. " +
                 _time_note(devs) +
                 (f", one clip at a time over the first {r0['timing_clips']} prompts."
                  if r0.get("timing_clips") else ", means over the scored clips."))
    return "\n".join(lines + shapes_table(results) + differences(results) +
                     targets_table(results, targets)) + "\n"


def shapes_recorded(records):
    """The shapes (in SHAPES' order) that any record's shape_by scores."""
    return [k for k in sv.SHAPES if any(k in r.get("shape_by", {}) for r in records)]


def shapes_table(results):
    """Table lines: each row's shape accuracy over the clips of each prompted shape."""
    shapes = shapes_recorded(results)
    if not shapes:
        return []
    counts = Counter(c[1] for _, c in sv.heldout_prompts()[:results[0]["prompts"]])
    return ["", "Shape by the prompted shape (held-out prompts of each):", "",
            "| setting | " + " | ".join(f"{k} ({counts[k]})" for k in shapes) + " |",
            "|---|" + "---|" * len(shapes)] + [
        f"| {r['name']} | " + " | ".join(
            f"{r['shape_by'][k]:.2f}" if k in r.get("shape_by", {}) else "" for k in shapes)
        + " |" for r in results]


def differences(results):
    """Table lines: each row minus the row it is judged against (its "against", else the
    first row), paired over the same prompts and seeds, in points (1 point = 0.01)."""
    by_name = {r["name"]: r for r in results}
    lines = []
    for r in results[1:]:
        ref = by_name.get(r.get("against")) or results[0]
        if ref is r or "per_clip" not in r or "per_clip" not in ref:
            continue
        d = sm.paired_difference(r["per_clip"], ref["per_clip"])
        lines.append(f"| {r['name']} | {ref['name']} | " + " | ".join(
            f"{100 * m:+.1f} ± {100 * se:.1f}" for m, se in (d[k] for k in sm.ATTRIBUTES))
            + " |")
    if not lines:
        return []
    return ["", "Differences in points, paired over the same prompts and seeds (± one "
            "standard error):", "",
            "| setting | against | colour | shape | motion | consistency |",
            "|---|---|---|---|---|---|"] + lines


def targets_table(results, targets=None):
    """Table lines: each target of the standard rows, what was measured, met or not
    (point estimates; the paired differences above give their standard errors)."""
    t = dict(TARGETS, **(targets or {}))
    t["scores"] = dict(TARGETS["scores"], **(targets or {}).get("scores", {}))
    by_name = {r["name"]: r for r in results}
    if SHIPPED not in by_name or BASE not in by_name:
        return []
    ship, base = by_name[SHIPPED], by_name[BASE]
    rows = []

    def add(what, measured, ok):
        rows.append(f"| {what} | {measured} | {'met' if ok else '**not met**'} |")
    for k, floor in t["scores"].items():
        add(f"shipped {k} ≥ {floor:.2f}", f"{ship[k]:.2f}", ship[k] >= floor - 1e-9)
    for name, ref, points in t["below"]:
        if name in by_name and ref in by_name:
            d = sm.paired_difference(by_name[name]["per_clip"], by_name[ref]["per_clip"])
            worst = min(sm.ATTRIBUTES, key=lambda k: d[k][0])
            add(f"{name} within {points:g} points of {ref} on every attribute",
                f"worst {worst} {100 * d[worst][0]:+.1f}", 100 * d[worst][0] >= -points - 1e-9)
    for dev in ship.get("timing", {}):
        a, b = base["timing"][dev], ship["timing"][dev]
        for key, label in (("run", "one clip a process"), ("warm", "warm")):
            if key in a and key in b:
                x = a[key] / max(b[key], 1e-9)
                add(f"shipped ≥ {t['speedup']:g}× the base on {dev} ({label})", f"{x:.1f}×",
                    x >= t["speedup"])
    return ["", "Targets:", "", "| target | measured | |", "|---|---|---|"] + rows


def sheet(clips, run, rows_per_setting=4):
    """Contact sheet: ground truth then each setting, per prompt."""
    v = run["video"] if run else None
    names = list(clips)
    prompts = sv.heldout_prompts()
    rows = []
    n = min(rows_per_setting, min(len(c) for c in clips.values()))
    rng = np.random.default_rng(0)
    for i in range(n):
        combo = prompts[i][1]
        if v:
            gt = sv.render({"objects": [combo[:3]], "background": combo[3]}, v["frames"],
                           v["height"], v["width"], rng, jitter=False)
            rows.append(tl.latent_to_frames(gt))
        for name in names:
            rows.append(clips[name][i])
    return pngio.contact_sheet(rows, scale=3, gap=2, background=96), n


def curve_table(run_dir, stage="base"):
    """Markdown table of a stage's PyTorch evaluations (held-out prompts) over training."""
    path = os.path.join(run_dir, stage, "evals.jsonl")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        evals = [json.loads(line) for line in f if line.strip()]
    # shape by prompted shape, where the evaluations recorded it
    shapes = shapes_recorded(evals)
    lines = ["| step | hours | clips seen | colour | shape | motion | consistency |"
             + "".join(f" {k} |" for k in shapes),
             "|---|---|---|---|---|---|---|" + "---|" * len(shapes)]
    for e in evals:
        by = e.get("shape_by", {})
        lines.append(f"| {e['step']} | {e['hours']:.2f} | {e['clips']} | "
                     f"{e['colour']:.2f} | {e['shape']:.2f} | {e['motion']:.2f} | "
                     f"{e['consistency']:.2f} |"
                     + "".join(f" {by[k]:.2f} |" if k in by else "  |" for k in shapes))
    return "\n".join(lines) + "\n"


def run_stage(run, run_dir, vdit=None, quiet=False):
    cfg = run.get("bench", {})
    out = os.path.join(run_dir, "bench")
    os.makedirs(out, exist_ok=True)
    log = tl.Log(run_dir, "bench", quiet)
    threads = int(cfg.get("threads", 2))
    t0 = time.time()
    results, clips = bench(standard_rows(run_dir), tl.find_vdit(vdit),
                           int(cfg.get("prompts", 30)), threads, int(cfg.get("seed", 100)), log,
                           seeds=int(cfg.get("seeds", 1)), device=cfg.get("device", "cpu"),
                           jobs=int(cfg.get("jobs", 1)), timing=cfg.get("timing"),
                           timing_prompts=int(cfg.get("timing_prompts", 3)))
    if results is None:
        return None
    md = table(results, threads, cfg.get("targets"))
    with open(os.path.join(out, "synthbench.md"), "w", encoding="utf-8") as f:
        f.write(md)
    with open(os.path.join(out, "stages.md"), "w", encoding="utf-8") as f:
        f.write(run_costs.table(run_dir, time.time() - t0))
    for stage in ("base", "mlcd", "kd"):
        t = curve_table(run_dir, stage)
        if t:
            with open(os.path.join(out, f"curve-{stage}.md"), "w", encoding="utf-8") as f:
                f.write(t)
            plotpng.plot_evals(os.path.join(run_dir, stage, "evals.jsonl"),
                               os.path.join(out, f"curve-{stage}.png"))
    img, n = sheet(clips, run)
    pngio.write_png(os.path.join(out, "sheet.png"), img)
    result = {"results": results, "sheet_prompts": [p for p, _ in sv.heldout_prompts()[:n]],
              "sheet_rows": ["ground truth"] + list(clips)}
    tl.write_json(os.path.join(out, "results.json"), result)
    tl.write_json(os.path.join(out, "done.json"), result)
    log("table:\n" + md)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", help="a pipeline run: its standard rows")
    ap.add_argument("--row", action="append", default=[],
                    help="NAME=DIR[,attention=MODE][,steps=S][,guidance=G]")
    ap.add_argument("--prompts", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=1, help="clips per prompt")
    ap.add_argument("--device", help="cpu (default) or cuda: the backend that makes the "
                    "scored clips")
    ap.add_argument("--jobs", type=int, help="engine processes at a time (default 1)")
    ap.add_argument("--timing", help="comma-separated backends timed one clip at a time "
                    "(default: the scored clips' own times, with one job)")
    ap.add_argument("--timing-prompts", type=int, help="prompts of each timing pass (3)")
    ap.add_argument("--timing-only", action="store_true",
                    help="only the timing pass of each row (--timing, default cpu): no scores")
    ap.add_argument("--vdit")
    ap.add_argument("--sheet", help="write a contact sheet PNG here")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    opts = {"device": a.device, "jobs": a.jobs, "timing_prompts": a.timing_prompts,
            "timing": a.timing.split(",") if a.timing else None}
    if any(t not in ("cpu", "cuda") for t in [a.device or "cpu"] + (opts["timing"] or [])):
        ap.error("--device and --timing take cpu or cuda")
    if a.timing_only:
        rows = [parse_row(r) for r in a.row] or (standard_rows(a.run_dir) if a.run_dir
                                                 else [])
        if not rows:
            ap.error("give --run-dir or --row")
        print(timing_table(rows, tl.find_vdit(a.vdit), opts["timing"] or ["cpu"],
                           a.timing_prompts or 3, a.threads, a.seed), end="")
        return
    if a.run_dir and not a.row:
        run = tl.load_run_config(os.path.join(a.run_dir, "run.json"))
        run.setdefault("bench", {}).update({k: v for k, v in opts.items() if v is not None})
        run_stage(run, a.run_dir, a.vdit)
        return
    rows = [parse_row(r) for r in a.row]
    if not rows:
        ap.error("give --run-dir or --row")
    results, clips = bench(rows, tl.find_vdit(a.vdit), a.prompts, a.threads, a.seed,
                           seeds=a.seeds, device=a.device or "cpu", jobs=a.jobs or 1,
                           timing=opts["timing"], timing_prompts=a.timing_prompts or 3)
    print(table(results, a.threads), end="")
    if a.sheet:
        pngio.write_png(a.sheet, sheet(clips, None)[0])
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
