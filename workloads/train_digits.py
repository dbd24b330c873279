"""Train a small convolutional SNN on scikit-learn's handwritten digits, then export its spike trace.

    pip install -e ".[torch]"
    python workloads/train_digits.py            # writes workloads/digits_snn.npz

The data are real and offline: scikit-learn's ``load_digits`` (the UCI ML hand-written digits,
8x8 pixels, 17 grey levels, 1,797 images), scaled to [0, 1], bilinear-upsampled to 16x16 and
rounded to the 8-bit grid k/255 (what an 8-bit pixel readout delivers). A stratified split keeps
25 % of the images for testing.

The network runs on a P2M chip (``hwconfigs/p2m_digits.yaml``); it is exported as format v2,
each neuron as the snnTorch ``Leaky`` it is:

    conv0  Conv2d 1 -> 8, kernel 2, stride 2, no padding, no bias   16x16 -> 8x8   (the in-pixel layer)
    lif0   snntorch.Leaky(beta=1): IF, threshold 1, reset by subtraction
    conv1  Conv2d 8 -> 16, kernel 3, padding 1, no bias             8x8
    lif1   IF as above
    pool   MaxPool2d 2 of spikes (their OR)                          16x4x4
    flat   Flatten                                                   256
    fc     Linear 256 -> 10, no bias, no neuron (membrane read-out summed over the steps)

Direct encoding, T = 4 steps, surrogate gradients (snnTorch's arctan), Adam. Every weight is
trained quantisation-aware on a 4-bit sign-magnitude grid per output channel (alpha * k / 7,
k = -7..7, alpha = the channel's largest magnitude; straight-through gradient), so the exported
weights are what a 4-bit chip stores. No bias and no batch norm: the chip's 4-bit weights are
the whole model.

Seeded and deterministic on CPU (one thread, deterministic algorithms): the same versions give
the same weights, accuracy and trace.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
TIME_STEPS = 4
SIZE = 16
WEIGHT_BITS = 4
EXPORT_SAMPLES = 32


def load_digits_16() -> tuple[np.ndarray, np.ndarray]:
    """Digits as float32 (N, 1, 16, 16) on the 8-bit grid in [0, 1], and their labels."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    x = torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0
    return x.numpy().astype(np.float32), d.target.astype(np.int64)


def sign_magnitude(bits: int):
    """b-bit sign-magnitude fake quantisation per output channel (snnsim.export.training)."""
    from snnsim.export.training import sign_magnitude as quant

    return quant(bits)


def build_model():
    import snntorch as snn
    import torch.nn as nn
    from snntorch import surrogate

    grad = surrogate.atan()

    class DigitsSNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv0 = nn.Conv2d(1, 8, kernel_size=2, stride=2, bias=False)
            self.lif0 = snn.Leaky(beta=1.0, threshold=1.0, spike_grad=grad, init_hidden=True)
            self.conv1 = nn.Conv2d(8, 16, kernel_size=3, padding=1, bias=False)
            self.lif1 = snn.Leaky(beta=1.0, threshold=1.0, spike_grad=grad, init_hidden=True)
            self.pool = nn.MaxPool2d(2)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(16 * 4 * 4, 10, bias=False)

        def forward(self, x):  # one time step
            s0 = self.lif0(self.conv0(x))
            s1 = self.lif1(self.conv1(s0))
            return self.fc(self.flat(self.pool(s1)))

    return DigitsSNN()


def run(model, x, steps: int = TIME_STEPS):
    """Direct encoding: the same input every step; the read-out is the sum of the fc outputs."""
    from snnsim.export.training import run_direct

    return run_direct(model, x, steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--samples", type=int, default=EXPORT_SAMPLES, help="test images in the exported trace")
    p.add_argument("-o", "--out", default=str(HERE / "digits_snn.npz"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    if Path(args.out).exists() and not args.overwrite:
        print(f"{args.out} exists: pass --overwrite to replace it, or -o another file", file=sys.stderr)
        return 2

    import torch
    import torch.nn.utils.parametrize as parametrize
    from sklearn.model_selection import train_test_split
    from snnsim.export import from_torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    t0 = time.time()

    x, y = load_digits_16()
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=SEED)
    xtr, ytr = torch.as_tensor(x[idx_train]), torch.as_tensor(y[idx_train])
    xte, yte = torch.as_tensor(x[idx_test]), torch.as_tensor(y[idx_test])

    model = build_model()
    for m in (model.conv0, model.conv1, model.fc):
        parametrize.register_parametrization(m, "weight", sign_magnitude(WEIGHT_BITS))
    from snnsim.export.training import train_direct

    def log(epoch: int, loss: float) -> None:
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {loss:.4f}")

    train_direct(model, xtr, ytr, TIME_STEPS, epochs=args.epochs, lr=5e-3, batch=64, seed=SEED, log=log)

    for m in (model.conv0, model.conv1, model.fc):  # the 4-bit weights become the weights
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    model.eval()
    with torch.no_grad():
        pred = run(model, xte).argmax(dim=1)
        acc = float((pred == yte).float().mean())
        pred_tr = run(model, xtr).argmax(dim=1)
        acc_tr = float((pred_tr == ytr).float().mean())
    print(f"train accuracy {acc_tr:.4f} ({len(ytr)} images)")
    print(f"test accuracy  {acc:.4f} ({int((pred == yte).sum())}/{len(yte)} held-out images), T = {TIME_STEPS}")

    n = min(args.samples, len(yte))
    trained = {"data": "scikit-learn load_digits (UCI ML hand-written digits, CC BY 4.0)",
               "preprocessing": f"ink/16, bilinear to {SIZE}x{SIZE}, rounded to k/255",
               "split": "stratified 75/25, random_state 0", "epochs": args.epochs, "time_steps": TIME_STEPS,
               "optimizer": "Adam lr 5e-3, cosine schedule, batch 64", "surrogate": "snntorch atan",
               "weights": f"{WEIGHT_BITS}-bit sign-magnitude per output channel, quantisation-aware",
               "seed": SEED, "test_accuracy": round(acc, 4), "train_accuracy": round(acc_tr, 4),
               "test_images": len(yte), "labels": [int(v) for v in yte[:n]],
               "exported_accuracy": round(float((pred[:n] == yte[:n]).float().mean()), 4)}
    gt = from_torch(model, xte[:n], TIME_STEPS, path=args.out, model_name="digits_snn",
                    dataset=f"sklearn_digits_{SIZE}x{SIZE} (test split, first {n})",
                    weight_bits=WEIGHT_BITS, provenance={"trained": trained})
    print(f"wrote {args.out}: {n} samples, T = {TIME_STEPS}, {Path(args.out).stat().st_size:,} bytes")
    print("spike rates (spikes / (neurons x steps)):")
    for name, (shape, per_step) in gt.spike_rates().items():
        steps = " / ".join(f"{r:.3f}" for r in per_step)
        print(f"  {name:6s} {'x'.join(map(str, shape)):8s} {float(per_step.mean()):.4f}   steps {steps}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
