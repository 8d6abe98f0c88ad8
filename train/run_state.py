#!/usr/bin/python3
"""A training run packed into parts small enough to travel between machines, and unpacked
again (docs/training.md, "Training across machines"):

    run_state.py pack RUN_DIR DEST [--part-mib 15]   DEST/state.json + DEST/state.tar.part-NNN
    run_state.py unpack SRC RUN_DIR                   from SRC/state.json and every part it names
    run_state.py status SRC                           which parts SRC has of its state.json
    run_state.py gather DEST DIR...                   the parts of one pack from the calls' outputs
    run_state.py split SRC PREFIX [--per 3]           PREFIX-1, PREFIX-2 ...: a call's carry each
    run_state.py seed MODEL... RUN_DIR --config CFG   a run whose first stages are exported models

A GPU machine is lent for half an hour and gives back at most 64 MiB in 8 files a call,
while a stage of the GPU config trains for longer: the run goes back and forth in parts
of at most 15 MiB, a few each call.

What goes: the run's config, tokenizer and log, every stage's small files (done.json,
evals, the tile plan, exports and SynthBench once made), each finished stage's final.pt,
and the checkpoints of the stage in progress. To halve the bytes, every floating-point
tensor of a checkpoint is stored as bf16 except the live weights ("model" in ckpt.pt):
the EMA copies, the optimiser's moments and the finished stages' weights are rounded
once per crossing (relative 2^-9), which training does not notice, while the weights
it updates stay exact. Left out: a finished stage's ckpt.pt and best.pt (nothing reads
them again, except a stage continued with more steps than it finished with: on the
unpacked run that stage starts over), stale directories of a redone stage, the lock and
the background files.
Loading casts back to float32 (load_state_dict, and the optimiser's own load).
"""

import argparse
import glob
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MANIFEST = "state.json"
PART = "state.tar.part-"
SKIP_NAMES = {"lock", "background.log", "background.pid", "background.rc"}


class StateError(Exception):
    pass


def _compact(obj, keep_exact=False):
    """obj with its floating tensors as bf16, except under keep_exact and the optimiser's
    step counters."""
    import torch
    if isinstance(obj, torch.Tensor):
        if keep_exact or not obj.is_floating_point() or obj.numel() <= 1:
            return obj
        return obj.to(torch.bfloat16)
    if isinstance(obj, dict):
        return {k: _compact(v, keep_exact or k == "model" or k == "step") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_compact(v, keep_exact) for v in obj)
    return obj


def _is_optimiser_state(obj):
    return isinstance(obj, dict) and "param_groups" in obj and "state" in obj


def _light(ck):
    """A stage-in-progress checkpoint without its optimiser moments and with its live
    weights in bf16 too: a third of the bytes, and the stage resumes with fresh moments."""
    kept = {k: v for k, v in ck.items() if not _is_optimiser_state(v)}
    kept["state"] = dict(ck["state"], carried_light=True)
    out = _compact({k: v for k, v in kept.items() if k != "model"})
    if "model" in kept:  # the key that _compact keeps exact
        out["model"] = _compact(kept["model"])
    return out


def _finished(run_dir, stage):
    return os.path.exists(os.path.join(run_dir, stage, "done.json"))


def _members(run_dir, light=False):
    """(path relative to run_dir, absolute path) of what travels, in a stable order; light
    leaves the best.pt of a stage in progress behind too."""
    out = []
    for root, dirs, files in os.walk(run_dir):
        rel_root = os.path.relpath(root, run_dir)
        dirs[:] = sorted(d for d in dirs if ".stale-" not in d)
        stage = rel_root.split(os.sep)[0] if rel_root != "." else None
        for f in sorted(files):
            if rel_root == "." and f in SKIP_NAMES or f.endswith(".tmp"):
                continue
            if f in ("ckpt.pt", "best.pt") and stage and _finished(run_dir, stage):
                continue
            if light and f == "best.pt":
                continue
            out.append((os.path.normpath(os.path.join(rel_root, f)), os.path.join(root, f)))
    return out


def _finished_stages(run_dir):
    """The manifest's line for each finished stage."""
    return {stage: "done" for stage in ("base", "mlcd", "search", "kd", "export", "bench")
            if _finished(run_dir, stage)}


def pack(run_dir, dest, part_bytes, light=False):
    """Writes dest/state.tar.part-NNN and dest/state.json; returns the manifest. light:
    the stage in progress travels as its weights and EMA alone (_light), without best.pt."""
    import torch
    import trainlib as tl
    if not os.path.exists(os.path.join(run_dir, "run.json")):
        raise StateError(f"{run_dir}: not a training run (no run.json)")
    os.makedirs(dest, exist_ok=True)
    for old in glob.glob(os.path.join(dest, PART + "*")) + [os.path.join(dest, MANIFEST)]:
        if os.path.exists(old):
            os.remove(old)
    buf = io.BytesIO()
    raw = 0
    stages = _finished_stages(run_dir)
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, path in _members(run_dir, light):
            raw += os.path.getsize(path)
            if path.endswith(".pt"):
                ck = tl.load(path)
                stage, name = os.path.split(rel)
                if name == "ckpt.pt":  # a stage in progress: the step it reached
                    stages[stage] = f"step {ck['state']['step']}" + (" (light)" if light else "")
                data = io.BytesIO()
                torch.save(_light(ck) if light and name == "ckpt.pt" else _compact(ck), data)
                info = tarfile.TarInfo(rel)
                info.size = data.tell()
                info.mtime = int(os.path.getmtime(path))
                data.seek(0)
                tar.addfile(info, data)
            else:
                tar.add(path, arcname=rel, recursive=False)
    blob = buf.getvalue()
    parts = []
    for i in range(0, max(len(blob), 1), part_bytes):
        name = f"{PART}{len(parts):03d}"
        with open(os.path.join(dest, name), "wb") as f:
            f.write(blob[i:i + part_bytes])
        parts.append(name)
    manifest = {"run": os.path.basename(os.path.normpath(run_dir)),
                "made": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": stages,
                "bytes": len(blob), "bytes_unpacked_from": raw,
                "sha256": hashlib.sha256(blob).hexdigest(), "parts": parts}
    with open(os.path.join(dest, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def read_manifest(src):
    path = os.path.join(src, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
        if not isinstance(m.get("parts"), list) or not isinstance(m.get("sha256"), str):
            raise ValueError("no parts or sha256")
        return m
    except (OSError, ValueError) as e:
        raise StateError(f"{path}: not a packed run ({e})")


def missing_parts(src):
    return [p for p in read_manifest(src)["parts"] if not os.path.exists(os.path.join(src, p))]


def _require_all_parts(src, m):
    missing = missing_parts(src)
    if missing:
        raise StateError(f"{src}: {len(missing)} of {len(m['parts'])} parts missing "
                         f"({', '.join(missing)})")


def _report_parts(src, m):
    """Prints how many of m's parts src has; exits 0 when all, else 4."""
    missing = missing_parts(src)
    print(f"{src}: {len(m['parts']) - len(missing)} of {len(m['parts'])} parts"
          + (f"; missing {' '.join(missing)}" if missing else ""))
    raise SystemExit(0 if not missing else 4)


def unpack(src, run_dir):
    """Rebuilds run_dir from src's parts; run_dir must not exist yet."""
    m = read_manifest(src)
    if os.path.exists(run_dir):
        raise StateError(f"{run_dir} exists: move it away to unpack a packed run there")
    _require_all_parts(src, m)
    blob = b"".join(open(os.path.join(src, p), "rb").read() for p in m["parts"])
    if len(blob) != m["bytes"] or hashlib.sha256(blob).hexdigest() != m["sha256"]:
        raise StateError(f"{src}: the parts do not make the packed run "
                         f"({len(blob)} bytes, {m['bytes']} expected, or another checksum)")
    tmp = run_dir.rstrip("/") + ".unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        for member in tar.getmembers():
            target = os.path.normpath(os.path.join(tmp, member.name))
            if not member.isfile() or not target.startswith(tmp + os.sep):
                raise StateError(f"{src}: unexpected member {member.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp, filter="data")
        else:
            tar.extractall(tmp)
    os.rename(tmp, run_dir)
    return m


def gather(dest, dirs):
    """Copies the parts of one pack from dirs (each with its state.json) into dest."""
    m = None
    for d in dirs:
        dm = read_manifest(d)
        if m is not None and dm["sha256"] != m["sha256"]:
            raise StateError(f"{d}: parts of another pack than {dirs[0]}'s")
        m = dm
    if m is None:
        raise StateError("no folders to gather from")
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(os.path.join(dirs[0], MANIFEST), os.path.join(dest, MANIFEST))
    for d in dirs:
        for p in m["parts"]:
            if os.path.exists(os.path.join(d, p)):
                shutil.copyfile(os.path.join(d, p), os.path.join(dest, p))
    return m


def split(src, prefix, per):
    """src's parts into folders prefix-1, prefix-2 ... of `per` parts and the manifest:
    one folder for each call to carry. Returns the folders."""
    m = read_manifest(src)
    _require_all_parts(src, m)
    out = []
    for i in range(0, len(m["parts"]), per):
        d = f"{prefix}-{len(out) + 1}"
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        shutil.copyfile(os.path.join(src, MANIFEST), os.path.join(d, MANIFEST))
        for p in m["parts"][i:i + per]:
            shutil.copyfile(os.path.join(src, p), os.path.join(d, p))
        out.append(d)
    return out


SEED_STAGES = ("base", "mlcd")  # the trained stages a run can start from, in order


def finished_export(model_dir):
    """(stage, done.json) from the safetensors header export.py writes."""
    from vdit_torch import safetensors_io
    try:
        _, meta, _, _ = safetensors_io.read_header(os.path.join(model_dir, "model.safetensors"))
        if meta.get("stage") not in SEED_STAGES or "trained" not in meta:
            raise StateError(f"{model_dir}: not the export of a finished base or MLCD stage "
                             f"(its header has stage {meta.get('stage')!r}"
                             f"{'' if 'trained' in meta else ' and no trained record'})")
        return meta["stage"], json.loads(meta["trained"])
    except (OSError, ValueError) as e:  # no file, not safetensors, a damaged record
        raise StateError(f"{model_dir}: not a model directory of ours ({e})")


def seed(model_dirs, run_dir, config):
    """A new run (config CFG) whose first stages finished with the weights of MODEL_DIRS,
    exports of finished stages by export.py in the pipeline's order (the base, or the base
    and MLCD: models/synth-gpu-base ...).  The pipeline then goes on with the next stage,
    or, where CFG asks a seeded stage for more steps than it was trained for, continues it
    from these weights (StageLoop.continue_finished).  The exported weights are bf16 and
    the optimiser's moments do not travel, like a light pack's.  Returns the done.json of
    each seeded stage."""
    import trainlib as tl
    from vdit_torch.model import VditModel
    if os.path.exists(run_dir):
        raise StateError(f"{run_dir} exists: seed a new run directory")
    found = [finished_export(d) for d in model_dirs]
    stages = [st for st, _ in found]
    if stages != list(SEED_STAGES[:len(stages)]):
        raise StateError(f"models of the stages {stages}: seed from "
                         f"{' then '.join(SEED_STAGES)} exports, in that order")
    try:
        tokenizers = {open(os.path.join(d, "tokenizer.model"), "rb").read() for d in model_dirs}
    except OSError as e:
        raise StateError(f"a model without its tokenizer ({e})")
    if len(tokenizers) != 1:
        raise StateError(f"{' and '.join(model_dirs)} have different tokenizers")
    tmp = run_dir.rstrip("/") + ".seeding"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        # the models' own tokenizer, so that prepare_run keeps it instead of training one
        shutil.copyfile(os.path.join(model_dirs[0], "tokenizer.model"),
                        os.path.join(tmp, "tokenizer.model"))
        run = tl.prepare_run(config, tmp)
        model = tl.new_model(run, tmp)
        out = {}
        for d, (stage, done) in zip(model_dirs, found):
            try:
                model.load_state_dict(VditModel.from_dir(d).state_dict())
            except (RuntimeError, ValueError) as e:
                raise StateError(f"{d} does not fit {config}: {e}")
            os.makedirs(os.path.join(tmp, stage))
            tl.save_atomic({"ema": model.state_dict()}, os.path.join(tmp, stage, "final.pt"))
            out[stage] = dict(done, best=None, kept=done["steps"], seeded_from=os.path.abspath(d))
            tl.write_json(os.path.join(tmp, stage, "done.json"), out[stage])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, run_dir)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("run_dir")
    p.add_argument("dest")
    p.add_argument("--part-mib", type=float, default=15.0)
    p.add_argument("--light", action="store_true",
                   help="the stage in progress without optimiser moments or best.pt")
    u = sub.add_parser("unpack")
    u.add_argument("src")
    u.add_argument("run_dir")
    s = sub.add_parser("status")
    s.add_argument("src")
    g = sub.add_parser("gather")
    g.add_argument("dest")
    g.add_argument("dirs", nargs="+")
    sp = sub.add_parser("split")
    sp.add_argument("src")
    sp.add_argument("prefix")
    sp.add_argument("--per", type=int, default=3, help="parts a folder (default 3)")
    sd = sub.add_parser("seed")
    sd.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR",
                    help="exports of the finished base (and MLCD) stage, in that order")
    sd.add_argument("run_dir")
    sd.add_argument("--config", required=True)
    a = ap.parse_args()
    try:
        if a.cmd == "pack":
            m = pack(a.run_dir, a.dest, max(1, int(a.part_mib * (1 << 20))), a.light)
            print(f"packed {a.run_dir} ({m['bytes_unpacked_from'] / 2**20:.1f} MiB) into "
                  f"{len(m['parts'])} parts of {a.dest} ({m['bytes'] / 2**20:.1f} MiB): "
                  f"{json.dumps(m['stages'])}")
        elif a.cmd == "unpack":
            m = unpack(a.src, a.run_dir)
            print(f"unpacked {len(m['parts'])} parts into {a.run_dir}: {json.dumps(m['stages'])}")
        elif a.cmd == "gather":
            _report_parts(a.dest, gather(a.dest, a.dirs))
        elif a.cmd == "split":
            for d in split(a.src, a.prefix, max(1, a.per)):
                print(d)
        elif a.cmd == "seed":
            for stage, d in seed(a.model_dirs, a.run_dir, a.config).items():
                print(f"seeded {a.run_dir}: {stage} finished at step {d['steps']} "
                      f"({d['clips']} clips) with {d['seeded_from']}'s weights")
        else:
            _report_parts(a.src, read_manifest(a.src))
    except StateError as e:
        raise SystemExit(f"run_state: {e}")


if __name__ == "__main__":
    main()
