#!/usr/bin/python3
"""PyTorch torchrun-elastic peer for `troupe bench recovery` (peer b).

One worker of a DDP job (gloo) started by torchrun, which restarts every
worker of the job when one fails (--max_restarts): trains troupe's zoo "mlp"
(784-1024-512-10, ReLU, Adam) on MNIST read from --data (IDX gz, x/255) at
the global batch --batch, rank r taking its contiguous part of each global
batch. Rank 0 writes a checkpoint (model, optimizer, step) every
--checkpoint-every steps into --checkpoint (written to a temporary file, then
renamed, so a kill never leaves half of one); every worker starts from the
last checkpoint there, as DDP users write it.

For the benchmark each worker keeps `--progress/rank<R>` at "<pid> <steps
done>" (replaced atomically each step), so the bench can kill one worker at a
chosen step; a worker that starts from a checkpoint writes
`--progress/restored-<restart>` with that step.

  /usr/bin/python3 -m torch.distributed.run --nnodes 1 --nproc_per_node 3 \\
      --max_restarts 3 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:PORT \\
      bench/peers/ddp_elastic.py --data data/mnist --batch 768 --steps 60 \\
      --checkpoint /tmp/ck --checkpoint-every 10 --progress /tmp/progress

With --check it only checks that torch and its gloo backend load (exit 3 if
not) and prints the versions. Run with Debian's interpreter (python3-torch
installs only for it).
"""
import argparse
import ctypes
import datetime
import gzip
import importlib.util
import json
import os
import signal
import struct
import sys

EXIT_MISSING_TORCH = 3


def parse_args(argv):
    p = argparse.ArgumentParser(description="torchrun elastic DDP peer of troupe bench recovery")
    p.add_argument("--data", default="data/mnist", help="MNIST directory (IDX gz)")
    p.add_argument("--batch", type=int, default=768, help="global batch (split across ranks)")
    p.add_argument("--steps", type=int, default=60, help="steps in all")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--threads", type=int, default=1, help="compute threads per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="", help="checkpoint directory")
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--progress", default="", help="directory for the bench's progress files")
    p.add_argument("--check", action="store_true", help="only check that torch and gloo load")
    return p.parse_args(argv)


def check_torch():
    if importlib.util.find_spec("torch") is None:
        return f"python3-torch is not installed for {sys.executable}"
    try:
        import torch.distributed as dist
    except Exception as e:  # a broken install: report, do not crash
        return f"import torch failed under {sys.executable}: {e}"
    if not dist.is_available() or not dist.is_gloo_available():
        return "torch has no gloo backend"
    return None


def die_with_parent():
    """SIGKILL this worker when torchrun's agent dies, so a killed bench
    never leaves a worker behind."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def load_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def train(a, rank, world, restart):
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    base, extra = divmod(a.batch, world)
    sizes = [base + (1 if r < extra else 0) for r in range(world)]
    local, offset = sizes[rank], sum(sizes[:rank])
    xs = torch.from_numpy(load_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
                          .reshape(-1, 784).copy())
    ys = torch.from_numpy(load_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
                          .astype("int64"))
    n = xs.shape[0]
    per_epoch = n // a.batch
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    ck = os.path.join(a.checkpoint, "checkpoint.pt") if a.checkpoint else ""
    start = 0
    if ck and os.path.exists(ck):
        saved = torch.load(ck)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        start = saved["step"]
        if rank == 0 and a.progress:
            write_atomic(os.path.join(a.progress, f"restored-{restart}"), str(start))
    ddp = DDP(model)
    scale = world / a.batch  # DDP's average over ranks is then the global mean

    perms = {}

    def batch(step):
        e, i = divmod(step, per_epoch)
        if e not in perms:
            g = torch.Generator()
            g.manual_seed(a.seed * 1000003 + e)
            perms[e] = torch.randperm(n, generator=g)
        idx = perms[e][i * a.batch + offset:i * a.batch + offset + local]
        return xs[idx].float().div_(255.0), ys[idx]

    progress = os.path.join(a.progress, f"rank{rank}") if a.progress else ""
    for step in range(start, a.steps):
        x, y = batch(step)
        opt.zero_grad()
        loss = F.cross_entropy(ddp(x), y, reduction="sum") * scale
        loss.backward()
        opt.step()
        done = step + 1
        if ck and rank == 0 and done % a.checkpoint_every == 0 and done < a.steps:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "step": done}, ck + ".tmp")
            os.replace(ck + ".tmp", ck)
        if progress:
            write_atomic(progress, f"{os.getpid()} {done}")
    dist.barrier()


def main(argv):
    a = parse_args(argv)
    if a.check:
        why = check_torch()
        if why:
            print(f"ddp_elastic.py: {why}", file=sys.stderr)
            return EXIT_MISSING_TORCH
        import torch
        print(json.dumps({"torch_version": torch.__version__, "python": sys.executable}))
        return 0
    die_with_parent()
    import torch.distributed as dist
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if rank == 0 and a.checkpoint:
        os.makedirs(a.checkpoint, exist_ok=True)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    if a.progress:
        write_atomic(os.path.join(a.progress, f"rank{rank}"), f"{os.getpid()} 0")
    train(a, rank, world, restart)
    sys.stdout.flush()
    dist.destroy_process_group()
    # PyTorch 1.13's gloo can deadlock in interpreter teardown (see ddp_mlp.py).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
