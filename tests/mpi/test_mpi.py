#!/usr/bin/python3
"""Tests that run under mpirun: the communicator and sequence parallelism.

usage: test_mpi.py HAVE_MPI CASE PROGRAM [ARGS...]
Exit 77 (skipped) when this build has no MPI or mpirun is absent.
"""
import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HAVE_MPI, CASE, ARGS = sys.argv[1] == "true", sys.argv[2], sys.argv[4:]
PROGRAM = os.path.abspath(sys.argv[3])
ROOT = os.environ.get("VDIT_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
MPIRUN = shutil.which("mpirun")


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def check(cond, message):
    if not cond:
        print("FAIL:", message)
        sys.exit(1)


_session_base = []


def session_base():
    """A folder of this test's own for Open MPI's session directories: tests run at once
    and their mpiruns raced to make the shared one under /tmp ("orte_session_dir
    failed")."""
    if not _session_base:
        d = tempfile.mkdtemp(prefix="vdit-ompi-")
        atexit.register(shutil.rmtree, d, True)
        _session_base.append(d)
    return _session_base[0]


def mpi_env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_orte_tmpdir_base=session_base(),
               # shared memory without the kernel's cross-memory attach, which containers
               # often forbid
               OMPI_MCA_btl_vader_single_copy_mechanism="none",
               # Under AddressSanitizer: no leak check in MPI processes. Open MPI keeps
               # what MPI_Init allocates until exit, in components it unloads and built
               # without frame pointers, so the reports can neither be attributed nor
               # suppressed (whole stacks make the tests ten times slower). The engine's
               # single-process tests check its leaks.
               ASAN_OPTIONS=":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                   "detect_leaks=0"])))


def mpirun(np, *args, timeout=120):
    """Runs PROGRAM args on np ranks; returns (returncode, stdout, stderr, seconds)."""
    env = mpi_env()
    cmd = [MPIRUN, "--oversubscribe", "-np", str(np), PROGRAM, *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


def comm_collectives():
    for np in (1, 2, 3, 4):
        rc, out, err, _ = mpirun(np, "collectives")
        check(rc == 0, f"{np} ranks: exit {rc}: {err}")


def comm_single():
    proc = subprocess.run([PROGRAM, "single"], capture_output=True, text=True, timeout=30)
    check(proc.returncode == 0, f"single rank: exit {proc.returncode}: {proc.stderr}")


def comm_die():
    rc, out, err, secs = mpirun(3, "die", timeout=60)
    check(rc != 0, f"a dead rank: mpirun exited 0: {err}")
    check("completed without rank 1" not in err, f"a collective completed without rank 1: {err}")
    print(f"a dead rank ended the job in {secs:.1f} s with exit {rc}")


def comm_hang():
    rc, out, err, secs = mpirun(3, "hang", timeout=60)
    check(rc != 0, f"a hung rank: mpirun exited 0: {err}")
    check("did not complete within 2 s" in err, f"no timeout message: {err}")
    check(secs < 40, f"a hung rank took {secs:.0f} s to end the job")
    print(f"a hung rank ended the job in {secs:.1f} s with exit {rc}")


def model_copy(name, tmp, **attention):
    """models/NAME with its attention settings changed: links to its files, a new
    config.json."""
    src = os.path.join(ROOT, "models", name)
    dst = os.path.join(tmp, name)
    os.mkdir(dst)
    for entry in os.listdir(src):
        if entry != "config.json":
            os.symlink(os.path.join(src, entry), os.path.join(dst, entry))
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["attention"].update(attention)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f)
    return dst


def sequence_parallel(model, mode):
    """2, 3 and 4 ranks give rank 0's frames alone (sp_check compares)."""
    with tempfile.TemporaryDirectory() as tmp:
        # blocks of 16 tokens, so the adaptive pattern has blocks to skip; two steps: a
        # search with dense attention, then a search with the cached LSE and a sparse run
        path = model_copy(model, tmp, block=16, sparsity=0.5, warmup=0.0,
                          search_steps=[0.0, 0.5])
        for np in (2, 3, 4):
            rc, out, err, secs = mpirun(np, path, mode, "8", "2", "4.0")
            print(out.strip(), f"({secs:.1f} s)")
            check(rc == 0, f"{model} {mode}, {np} ranks: exit {rc}: {out} {err}")


def y4m_close(a, b):
    """Same size, and no byte more than one level apart (fp32 sums in another order)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        da, db = fa.read(), fb.read()
    return len(da) == len(db) and all(abs(x - y) <= 1 for x, y in zip(da, db))


def cli_generate():
    """vdit generate under mpirun (SPMD, and MPMD with vdit worker): rank 0 writes the
    clip one process writes; the other ranks write nothing."""
    model = os.path.join(ROOT, "models", "default")
    args = ["generate", "--model", model, "--prompt", "a red ball", "--steps", "2",
            "--threads", "1", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        one = os.path.join(tmp, "one.y4m")
        proc = subprocess.run([PROGRAM, *args, "--out", one], capture_output=True, text=True,
                              timeout=120, cwd=tmp)
        check(proc.returncode == 0, f"one process: {proc.stderr}")
        for np in (2, 3):
            out = os.path.join(tmp, f"spmd{np}.y4m")
            rc, stdout, err, secs = mpirun(np, *args, "--out", out)
            check(rc == 0, f"{np} ranks: exit {rc}: {err}")
            check(y4m_close(one, out), f"{np} ranks: the clip differs from one process's")
            print(f"vdit generate on {np} ranks: the same clip ({secs:.1f} s)")
        out = os.path.join(tmp, "mpmd.y4m")
        rc, stdout, err, secs = mpirun(1, *args, "--out", out, ":", "-np", "2", PROGRAM,
                                       "worker", "--threads", "1")
        check(rc == 0, f"generate + 2 workers: exit {rc}: {err}")
        check(y4m_close(one, out), "generate + 2 workers: the clip differs")
        print(f"vdit generate + 2 vdit worker: the same clip ({secs:.1f} s)")
        check(sorted(os.listdir(tmp)) == ["mpmd.y4m", "one.y4m", "spmd2.y4m", "spmd3.y4m"],
              f"unexpected files: {os.listdir(tmp)}")


def cli_bench():
    """vdit bench step on 2 ranks: one JSON line, from rank 0."""
    model = os.path.join(ROOT, "models", "tiny")
    rc, out, err, _ = mpirun(2, "bench", "step", "--model", model, "--threads", "1",
                             "--repeat", "2", "--attention", "adaptive")
    check(rc == 0, f"exit {rc}: {err}")
    lines = out.strip().splitlines()
    check(len(lines) == 1, f"expected one JSON line: {out!r}")
    rec = json.loads(lines[0])
    check(rec["ranks"] == 2 and rec["bench"] == "step" and rec["ms"] > 0, f"{rec}")


def cli_errors():
    """Failures end every rank with a message: rank 0's, a worker's, too many ranks."""
    tiny = os.path.join(ROOT, "models", "tiny")
    base = ["--prompt", "a red ball", "--steps", "1", "--threads", "1", "--quiet"]
    cases = [
        ("rank 0 cannot load the model", 3,
         ["generate", "--model", "/nonexistent", *base, "--out", "OUTDIR/x.y4m"],
         "does not exist"),
        ("more ranks than heads", 5,
         ["generate", "--model", tiny, *base, "--out", "OUTDIR/x.y4m"], "use at most 4 ranks"),
        ("a worker on a device it lacks", 1,
         ["generate", "--model", tiny, *base, "--out", "OUTDIR/x.y4m", ":", "-np", "1",
          PROGRAM, "worker", "--device", "bogus"], "bogus"),
    ]
    for what, np, args, message in cases:
        with tempfile.TemporaryDirectory() as tmp:
            rc, out, err, secs = mpirun(np, *[a.replace("OUTDIR", tmp) for a in args], timeout=60)
            check(rc != 0, f"{what}: exit 0")
            check(message in err, f"{what}: no '{message}' in: {err}")
            # (a temporary file may stay when mpirun kills rank 0 inside a collective)
            check(not os.path.exists(os.path.join(tmp, "x.y4m")),
                  f"{what}: the output was written")
            print(f"{what}: every rank ended in {secs:.1f} s")


def descendants(pid):
    """Process ids below pid, with their command lines."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    children.setdefault(ppid, []).append((int(entry), f.read()))
            except (OSError, ValueError, IndexError):
                pass
    found, todo = [], [pid]
    while todo:
        for child, cmdline in children.get(todo.pop(), []):
            found.append((child, cmdline))
            todo.append(child)
    return found


def cli_lost_rank(sig, what):
    """A worker that dies (SIGKILL) or hangs (SIGSTOP) in the middle of a long clip ends
    every rank with an error, not a hang."""
    tiny = os.path.join(ROOT, "models", "tiny")
    env = dict(mpi_env(), VDIT_COMM_TIMEOUT="3")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [MPIRUN, "--oversubscribe", "-np", "1", PROGRAM, "generate", "--model", tiny,
               "--prompt", "a red ball", "--steps", "10000", "--threads", "1",
               "--out", os.path.join(tmp, "x.y4m"), ":", "-np", "2", PROGRAM, "worker",
               "--threads", "1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        # the ranks start, load the model and begin the clip: wait for rank 0's second
        # denoising step (a loaded machine may take far longer than usual to get there)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready and "step 2/" in proc.stderr.readline():
                break
        worker = PROGRAM.encode() + b"\0worker\0"
        workers = [pid for pid, cmdline in descendants(proc.pid) if cmdline.startswith(worker)]
        if proc.poll() is not None or len(workers) != 2:
            proc.kill()
            check(False, f"the clip did not start or ended early: {proc.communicate()}")
        start = time.monotonic()
        os.kill(workers[1], sig)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            for pid, _ in descendants(proc.pid):
                os.kill(pid, signal.SIGKILL)
            check(False, f"a worker that {what}: the job still ran after 60 s")
        secs = time.monotonic() - start
        check(proc.returncode != 0, f"a worker that {what}: exit 0")
        # (a temporary file may stay: mpirun kills rank 0 while it waits in a collective)
        check(not os.path.exists(os.path.join(tmp, "x.y4m")),
              f"a worker that {what}: the output was written")
        if sig == signal.SIGSTOP:
            check("did not complete within 3 s" in err, f"no timeout message: {err}")
        print(f"a worker that {what} mid-clip: every rank ended in {secs:.1f} s "
              f"(exit {proc.returncode})")


def element():
    """vditsrc in gst-launch-1.0 as rank 0, two vdit workers: the same frames as alone;
    vditsrc on a rank other than 0 is an error naming vdit worker."""
    gst_launch = shutil.which("gst-launch-1.0")
    plugin_dir = os.path.join(os.environ.get("VDIT_BUILD_ROOT", ""), "gst")
    if gst_launch is None or not os.path.exists(os.path.join(plugin_dir, "libgstvdit.so")):
        skip("gst-launch-1.0 or the vditsrc plug-in is absent")
    model = os.path.join(ROOT, "models", "default")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(mpi_env(), GST_PLUGIN_PATH_1_0=plugin_dir,
                   GST_REGISTRY_1_0=os.path.join(tmp, "registry.bin"))

        def pipeline(out):
            return [gst_launch, "-q", "vditsrc", f"model={model}", "prompt=a red ball",
                    "steps=2", "!", "filesink", f"location={out}"]

        alone = os.path.join(tmp, "alone.rgb")
        proc = subprocess.run(pipeline(alone), capture_output=True, text=True, env=env,
                              timeout=120)
        check(proc.returncode == 0, f"alone: {proc.stderr}")
        shared = os.path.join(tmp, "shared.rgb")
        start = time.monotonic()
        proc = subprocess.run([MPIRUN, "--oversubscribe", "-np", "1", *pipeline(shared), ":",
                               "-np", "2", PROGRAM, "worker", "--threads", "1"],
                              capture_output=True, text=True, env=env, timeout=120)
        check(proc.returncode == 0, f"rank 0 + 2 workers: exit {proc.returncode}: {proc.stderr}")
        check(y4m_close(alone, shared), "rank 0 + 2 workers: the frames differ")
        print(f"vditsrc + 2 vdit worker: the same frames ({time.monotonic() - start:.1f} s)")
        proc = subprocess.run([MPIRUN, "--oversubscribe", "-np", "2",
                               *pipeline(os.path.join(tmp, "x.rgb"))],
                              capture_output=True, text=True, env=env, timeout=120)
        check(proc.returncode != 0 and "vdit worker" in proc.stdout + proc.stderr,
              f"vditsrc on two ranks: exit {proc.returncode}: {proc.stdout} {proc.stderr}")


CASES = {"mpi-element": element,
         "mpi-worker-dies": lambda: cli_lost_rank(signal.SIGKILL, "dies"),
         "mpi-worker-hangs": lambda: cli_lost_rank(signal.SIGSTOP, "hangs"),
         "mpi-generate": cli_generate, "mpi-bench": cli_bench, "mpi-errors": cli_errors,
         "comm-collectives": comm_collectives, "comm-single": comm_single,
         "comm-die": comm_die, "comm-hang": comm_hang}

if __name__ == "__main__":
    if CASE != "comm-single":
        if not HAVE_MPI:
            skip("built without MPI")
        if MPIRUN is None:
            skip("mpirun is not installed (openmpi-bin)")
    if CASE.startswith("sp-"):
        _, model, mode = CASE.split("-")
        sequence_parallel(model, mode)
    else:
        CASES[CASE]()
