#!/usr/bin/python3
"""PyTorch reference for troupe's MNIST accuracy targets: the zoo models (mlp, cnn)
with PyTorch's default init, Adam lr 1e-3, batch 64, inputs x/255, shuffled each
epoch. Prints the test accuracy after each epoch.

Usage: /usr/bin/python3 bench/reference/mnist_torch.py --model cnn --epochs 2 [--seed 0]
(Debian's python3-torch installs for /usr/bin/python3: scripts/bootstrap --peers.)
"""
import argparse, gzip, struct, time
import numpy as np
import torch
import torch.nn as nn


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def model(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 512),
                             nn.ReLU(), nn.Linear(512, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(21632, 128),
                         nn.ReLU(), nn.Linear(128, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default="data/mnist")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    xs = torch.tensor(load_idx(f"{a.data}/train-images-idx3-ubyte.gz"), dtype=torch.float32) / 255
    ys = torch.tensor(load_idx(f"{a.data}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    xt = torch.tensor(load_idx(f"{a.data}/t10k-images-idx3-ubyte.gz"), dtype=torch.float32) / 255
    yt = torch.tensor(load_idx(f"{a.data}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    xs, xt = xs.unsqueeze(1), xt.unsqueeze(1)
    net = model(a.model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(a.epochs):
        t0 = time.time()
        perm = torch.randperm(len(xs))
        net.train()
        for i in range(0, len(xs), a.batch):
            idx = perm[i:i + a.batch]
            opt.zero_grad()
            loss = loss_fn(net(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            correct = sum((net(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum().item()
                          for i in range(0, len(xt), 1000))
        print(f"{a.model} seed {a.seed} epoch {epoch + 1}: test accuracy {correct / len(xt):.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
