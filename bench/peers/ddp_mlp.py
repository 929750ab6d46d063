#!/usr/bin/python3
"""PyTorch DistributedDataParallel peer for `troupe bench train --dp N`.

Trains troupe's zoo "mlp" (784-1024-512-10, ReLU) with DDP over gloo in
--world processes x --threads threads each, on MNIST read from --data (IDX gz,
x/255), at the global batch --batch (rank r takes its contiguous part of each
global batch, parts differing by at most one sample; the loss is scaled so
that DDP's gradient average is exactly the global mean, as in troupe). With
--init it starts from the safetensors file troupe wrote (0.weight ... 4.bias),
so both frameworks train the same parameters.

Run with Debian's interpreter (python3-torch installs only for it):

  /usr/bin/python3 bench/peers/ddp_mlp.py --world 2 --threads 1 --batch 256 \
      --optimizer sgd --lr 0.01 --warmup 20 --steps 200 --data data/mnist

Without --rank it is the launcher: it starts --world worker processes of this
script (thread counts pinned through OMP/OPENBLAS/MKL_NUM_THREADS before torch
loads), waits at most --timeout seconds, and kills every worker still alive
at the end. Workers end with destroy_process_group() and os._exit(), because
PyTorch 1.13's gloo can deadlock in interpreter teardown; a worker that has
written its result but does not exit within a grace period is killed and the
run still counts. The launcher prints one JSON object (last line of stdout,
and to --out when given).

Timing: --warmup untimed steps, a barrier, then --steps timed steps; a step is
zero_grad + data slice + forward + loss + backward (DDP's bucketed gloo
all-reduce overlapping it) + optimizer step. samples_per_second is
global batch x steps / the slowest rank's elapsed time. Afterwards
--local-steps steps under no_sync() (the same work without the all-reduce)
estimate the local compute per step, so step - compute is the time DDP's
gradient synchronisation adds.

Exit status: 0 ok, 1 failure, 2 bad arguments, 3 torch (or its gloo backend)
is missing for this interpreter, 124 timeout.
"""
import argparse
import ctypes
import datetime
import gzip
import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

EXIT_MISSING_TORCH = 3
EXIT_TIMEOUT = 124
# After a worker has written its result it gets this long to exit on its own.
EXIT_GRACE_SECONDS = 10.0


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch DDP (gloo) peer of troupe bench train --dp")
    p.add_argument("--world", type=int, default=2, help="processes (ranks)")
    p.add_argument("--threads", type=int, default=1, help="compute threads per process")
    p.add_argument("--batch", type=int, default=256, help="global batch (split across ranks)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=20, help="untimed steps")
    p.add_argument("--steps", type=int, default=200, help="timed steps")
    p.add_argument("--local-steps", type=int, default=-1,
                   help="steps under no_sync() after the timed ones (-1: steps / 4, 0: none)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (and init without --init)")
    p.add_argument("--data", default="data/mnist", help="MNIST directory (IDX gz)")
    p.add_argument("--init", default="", help="initial weights (safetensors, troupe's names)")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket_cap_mb")
    p.add_argument("--timeout", type=float, default=300.0, help="launcher: seconds for the run")
    p.add_argument("--out", default="", help="launcher: also write the JSON report here")
    p.add_argument("--cpus", default="",
                   help="launcher: pin rank r to core r of this comma-separated list (taskset "
                        "-c, e.g. 0,1; troupe bench hetero pins ranks like its nodes)")
    p.add_argument("--pids-file", default="",
                   help="launcher: write 'rank pid' lines here once the workers are started "
                        "(so a bench can throttle one rank)")
    p.add_argument("--check", action="store_true",
                   help="only check that torch and its gloo backend load; print versions")
    # Worker-only (set by the launcher).
    p.add_argument("--rank", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.world < 1 or a.threads < 1 or a.steps < 1 or a.warmup < 0:
        p.error("--world, --threads and --steps must be positive, --warmup >= 0")
    if a.batch < a.world:
        p.error(f"--batch {a.batch} is smaller than --world {a.world}: a rank would get no samples")
    if not a.lr > 0:
        p.error("--lr must be positive")
    if a.local_steps < 0:
        a.local_steps = max(1, a.steps // 4)
    try:
        a.cpus = [int(c) for c in a.cpus.split(",")] if a.cpus else []
    except ValueError:
        p.error(f"--cpus {a.cpus!r}: not a comma-separated list of core numbers")
    return a


def thread_env(threads):
    """The environment of a worker: every threading knob torch or a BLAS reads
    at load time pinned to `threads`, so ranks never oversubscribe cores."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS"):
        env[k] = str(threads)
    return env


# ---------------------------------------------------------------- launcher --

def check_torch():
    """None when torch with gloo is importable, else the reason it is not."""
    if importlib.util.find_spec("torch") is None:
        return (f"python3-torch is not installed for {sys.executable} "
                "(Debian: apt-get install python3-torch; scripts/bootstrap --peers)")
    try:
        import torch  # noqa: F401
        import torch.distributed as dist
    except Exception as e:  # a broken install: report, do not crash
        return f"import torch failed under {sys.executable}: {e}"
    if not dist.is_available() or not dist.is_gloo_available():
        return f"torch {torch.__version__} under {sys.executable} has no gloo backend"
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """In a worker before exec: SIGKILL it when the launcher dies, so a killed
    launcher (bench timeout, Ctrl-C) never leaves a rank behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


def kill_all(procs):
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def launch(a):
    # A bench killed outright (SIGKILL) cannot stop us: have the kernel send
    # SIGTERM when our parent goes, which kills the ranks (on_signal below).
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if a.check:
        why = check_torch()
        if why:
            print(f"ddp_mlp.py: {why}", file=sys.stderr)
            return EXIT_MISSING_TORCH
        import torch
        print(json.dumps({"torch_version": torch.__version__, "python": sys.executable,
                          "backend": "gloo"}))
        return 0
    # Only find_spec here: the launcher itself never loads torch or gloo.
    if importlib.util.find_spec("torch") is None:
        print(f"ddp_mlp.py: {check_torch()}", file=sys.stderr)
        return EXIT_MISSING_TORCH
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        if not os.path.isfile(os.path.join(a.data, f)):
            print(f"ddp_mlp.py: --data: no file {os.path.join(a.data, f)}", file=sys.stderr)
            return 2
    if a.init and not os.path.isfile(a.init):
        print(f"ddp_mlp.py: --init: no file {a.init}", file=sys.stderr)
        return 2

    procs = []

    def on_signal(signum, _frame):
        kill_all(procs)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with tempfile.TemporaryDirectory(prefix="troupe-ddp-") as tmp:
        port = free_port()
        results = [os.path.join(tmp, f"rank{r}.json") for r in range(a.world)]
        common = [sys.executable, os.path.abspath(__file__), "--world", str(a.world),
                  "--threads", str(a.threads), "--batch", str(a.batch), "--optimizer",
                  a.optimizer, "--lr", repr(a.lr), "--momentum", repr(a.momentum), "--warmup",
                  str(a.warmup), "--steps", str(a.steps), "--local-steps", str(a.local_steps),
                  "--seed", str(a.seed), "--data", a.data, "--init", a.init, "--bucket-mb",
                  repr(a.bucket_mb), "--timeout", repr(a.timeout), "--port", str(port)]
        env = thread_env(a.threads)
        for r in range(a.world):
            cpu = {a.cpus[r % len(a.cpus)]} if a.cpus else None

            def before_exec(cpu=cpu):
                die_with_parent()
                if cpu:
                    os.sched_setaffinity(0, cpu)

            procs.append(subprocess.Popen(common + ["--rank", str(r), "--result", results[r]],
                                          env=env, stdin=subprocess.DEVNULL,
                                          preexec_fn=before_exec))
        if a.pids_file:
            with open(a.pids_file + ".tmp", "w") as fh:
                fh.write("".join(f"{r} {p.pid}\n" for r, p in enumerate(procs)))
            os.replace(a.pids_file + ".tmp", a.pids_file)
        deadline = time.monotonic() + a.timeout
        failed = None
        exit_killed = []
        done_since = None
        while True:
            codes = [p.poll() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            # A rank that exits with an error leaves the others blocked in a
            # collective: stop everything at once.
            if bad and not all(os.path.isfile(results[r]) for r, _ in bad):
                failed = "rank %d exited with status %d" % bad[0]
                break
            if all(c is not None for c in codes):
                break
            if all(os.path.isfile(f) for f in results):
                # Results are in; a rank still alive after the grace period is
                # stuck in gloo's exit: kill it, the measurement stands.
                done_since = done_since or time.monotonic()
                if time.monotonic() - done_since > EXIT_GRACE_SECONDS:
                    exit_killed = [r for r, c in enumerate(codes) if c is None]
                    break
            if time.monotonic() > deadline:
                failed = f"timed out after {a.timeout:g} s"
                break
            time.sleep(0.05)
        kill_all(procs)
        missing = [r for r, f in enumerate(results) if not os.path.isfile(f)]
        if not failed and missing:
            failed = f"rank {missing[0]} exited without a result"
        if failed:
            print(f"ddp_mlp.py: {failed}", file=sys.stderr)
            return EXIT_TIMEOUT if failed.startswith("timed out") else 1
        ranks = []
        for f in results:
            with open(f) as fh:
                ranks.append(json.load(fh))

    r0 = ranks[0]
    seconds = max(r["seconds"] for r in ranks)
    report = dict(r0)
    del report["rank"]
    report.update({
        "samples_per_second": a.batch * a.steps / seconds,
        "steps_per_second": a.steps / seconds,
        "seconds": seconds,
        "rank_seconds": [r["seconds"] for r in ranks],
        "local_batch": [r["local_batch"] for r in ranks],
        "exit_killed_ranks": exit_killed,
    })
    text = json.dumps(report)
    if a.out:
        with open(a.out + ".tmp", "w") as fh:
            fh.write(text + "\n")
        os.replace(a.out + ".tmp", a.out)
    print(text, flush=True)
    return 0


# ------------------------------------------------------------------ worker --

def load_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_safetensors(path):
    """{name: float32 numpy array} of a safetensors file (F32 tensors only)."""
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    try:
        n, = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
    except (struct.error, ValueError) as e:
        raise ValueError(f"--init {path}: not a safetensors file ({e})") from None
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"--init {path}: tensor {name} is {info['dtype']}, not F32")
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw, dtype="<f4", count=(e - b) // 4,
                                  offset=base + b).reshape(info["shape"])
    return out


def loaded_blas():
    """The BLAS/LAPACK libraries mapped into this process, and OpenBLAS's own
    description of itself when it is one of them."""
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if ("blas" in name or "lapack" in name) and path not in libs:
                libs.append(path)
    info = {}
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            cfg = lib.openblas_get_config
        except (OSError, AttributeError):
            continue
        cfg.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        par = lib.openblas_get_parallel()
        info = {"config": cfg().decode(), "core": lib.openblas_get_corename().decode(),
                "parallel": {0: "sequential", 1: "pthread", 2: "openmp"}.get(par, "unknown"),
                "threads": lib.openblas_get_num_threads(), "library": os.path.realpath(path)}
        break
    blas = next((p for p in libs if "libblas.so" in p), libs[0] if libs else "none found")
    return os.path.realpath(blas), libs, info


def percentile(sorted_xs, q):
    if not sorted_xs:
        return 0.0
    i = min(len(sorted_xs) - 1, max(0, int(round(q * (len(sorted_xs) - 1)))))
    return sorted_xs[i]


def stats_ms(xs):
    s = sorted(x * 1e3 for x in xs)
    return {"median": percentile(s, 0.5), "p10": percentile(s, 0.1), "p90": percentile(s, 0.9),
            "min": s[0] if s else 0.0, "max": s[-1] if s else 0.0}


def worker(a):
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=a.rank,
                            world_size=a.world,
                            timeout=datetime.timedelta(seconds=max(30.0, a.timeout)))
    try:
        # Rank r's contiguous part of each global batch (as troupe's shares).
        base, extra = divmod(a.batch, a.world)
        sizes = [base + (1 if r < extra else 0) for r in range(a.world)]
        local = sizes[a.rank]
        offset = sum(sizes[:a.rank])

        xs = torch.from_numpy(load_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
                              .reshape(-1, 784).copy())
        ys = torch.from_numpy(load_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
                              .astype("int64"))
        n = xs.shape[0]
        per_epoch = n // a.batch

        model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(),
                              nn.Linear(512, 10))
        if a.init:
            tensors = read_safetensors(a.init)
            names = {k for k, _ in model.named_parameters()}
            if set(tensors) != names:
                raise ValueError(f"--init {a.init}: tensors {sorted(tensors)}, expected "
                                 f"{sorted(names)}")
            with torch.no_grad():
                for k, p in model.named_parameters():
                    t = torch.from_numpy(tensors[k].copy())
                    if t.shape != p.shape:
                        raise ValueError(f"--init {a.init}: {k} has shape {tuple(t.shape)}, "
                                         f"expected {tuple(p.shape)}")
                    p.copy_(t)
        ddp = DDP(model, bucket_cap_mb=a.bucket_mb)
        if a.optimizer == "sgd":
            opt = torch.optim.SGD(ddp.parameters(), lr=a.lr, momentum=a.momentum)
        else:
            opt = torch.optim.Adam(ddp.parameters(), lr=a.lr)
        # DDP averages gradients over ranks; scaling each rank's loss sum by
        # world / global batch makes that average the global mean gradient
        # even when the parts differ in size.
        scale = a.world / a.batch

        perm = None
        epoch = -1

        def batch(step):
            nonlocal perm, epoch
            e, i = divmod(step, per_epoch)
            if e != epoch:
                g = torch.Generator()
                g.manual_seed(a.seed * 1000003 + e)
                perm, epoch = torch.randperm(n, generator=g), e
            idx = perm[i * a.batch + offset:i * a.batch + offset + local]
            return xs[idx].float().div_(255.0), ys[idx]

        def step(i):
            opt.zero_grad(set_to_none=True)
            x, y = batch(i)
            loss = F.cross_entropy(ddp(x), y, reduction="sum") * scale
            loss.backward()
            opt.step()
            return loss

        for i in range(a.warmup):
            step(i)
        dist.barrier()
        times = []
        t0 = time.perf_counter()
        for i in range(a.steps):
            s0 = time.perf_counter()
            loss = step(a.warmup + i)
            times.append(time.perf_counter() - s0)
        seconds = time.perf_counter() - t0
        # The global mean loss of the last step (each rank's part / world, summed).
        last = loss.detach().clone() / a.world
        dist.all_reduce(last)
        # The same work without DDP's all-reduce: local compute per step.
        dist.barrier()
        local_times = []
        with ddp.no_sync():
            for i in range(a.local_steps):
                s0 = time.perf_counter()
                step(a.warmup + a.steps + i)
                local_times.append(time.perf_counter() - s0)
        dist.barrier()

        blas, libs, openblas = loaded_blas()
        step_ms = stats_ms(times)
        local_ms = stats_ms(local_times) if local_times else None
        result = {
            "rank": a.rank,
            "world_size": a.world,
            "threads_per_rank": a.threads,
            "torch_threads": torch.get_num_threads(),
            "batch": a.batch,
            "local_batch": local,
            "optimizer": a.optimizer,
            "lr": a.lr,
            "momentum": a.momentum,
            "warmup": a.warmup,
            "steps": a.steps,
            "seconds": seconds,
            "step_ms": step_ms,
            "local_steps": a.local_steps,
            "local_compute_ms": local_ms,
            "sync_ms": (step_ms["median"] - local_ms["median"]) if local_ms else None,
            "final_loss": float(last.item()),
            "bucket_cap_mb": a.bucket_mb,
            "backend": "gloo",
            "init": a.init or "torch default",
            "data": "MNIST %s, x/255, shuffled per epoch, sliced per step" % a.data,
            "torch_version": torch.__version__,
            "python": sys.executable,
            "blas": blas,
            "blas_libraries": libs,
            "openblas": openblas,
            "env": {k: os.environ.get(k, "(unset)") for k in (
                "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS")},
        }
        with open(a.result + ".tmp", "w") as fh:
            json.dump(result, fh)
        os.replace(a.result + ".tmp", a.result)
        dist.destroy_process_group()
    except BaseException as e:
        print(f"ddp_mlp.py rank {a.rank}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    # Skip interpreter teardown: gloo 1.13 can deadlock there.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main():
    a = parse_args(sys.argv[1:])
    if a.rank >= 0:
        worker(a)  # never returns
    return launch(a)


if __name__ == "__main__":
    sys.exit(main())
