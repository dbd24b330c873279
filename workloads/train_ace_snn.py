"""Train the two ACE-SNN model families on a synthetic hyperspectral scene, then export their traces.

    pip install -e ".[torch]"
    python workloads/train_ace_snn.py                           # workloads/hsi_ip_3d.npz, hsi_ip_hybrid.npz
    python workloads/train_ace_snn.py --preset pavia_university  # hsi_pu_3d.npz, hsi_pu_hybrid.npz
    python workloads/train_ace_snn.py --preset all               # ip, pu and sa (salinas)

ACE-SNN (Datta, Kundu, Jaiswal, Beerel, Front. Neurosci. 16:815258, 2022) classifies hyperspectral
pixels with direct-encoded SNNs (the analog patch is the input at every one of T = 5 steps, so the
first layer multiplies multi-bit values), 6-bit quantisation-aware weights, and learned membrane
leak and threshold. Its two families are a 3D CNN and a hybrid 3D/2D CNN shaped like HybridSN
(Roy et al. 2020: Conv3d 8@3x3x7, 16@3x3x5, 32@3x3x3, reshape the channels x spectral axes into
2D channels, Conv2d 64@3x3, FC 256, 128, classes). Its exact layer table is not public; the
shapes below are HybridSN's, made smaller to train on a CPU in minutes.

**The data are synthetic** (:mod:`snnsim.workload.hsi`): no hyperspectral dataset ships offline.
``--preset`` picks which published sizes the scene copies (``hsi.PRESETS``; band and class counts
kept, the grid scaled down), and the trace tag of the output files:

    preset              tag  full size         classes  scene here (height/full height)   pixels
    indian_pines        ip   145 x 145 x 200   16       60 x 60 x 200   (scale 60/145)      3,600
    pavia_university    pu   610 x 340 x 103    9       80 x 45 x 103   (scale 80/610)      3,600
    salinas             sa   512 x 217 x 204   16       92 x 39 x 204   (scale 92/512)      3,588

The heights are chosen so that every scene has about the 3,600 pixels of the 60 x 60 Indian Pines
scene (the traces committed first): the number of labelled patches, and so the CPU time of the
training, is about the same for the three presets. (The same height 60 for all would leave
Pavia University 60 x 33 and Salinas 60 x 25, with under half the patches.) ``--side`` overrides
the height; the width keeps the preset's aspect ratio. Each scene is a linear mixture of random
smooth endmember spectra over a soft Voronoi class map, with illumination variation and 30 dB
per-band noise, from seed 0. The accuracy printed is on that synthetic scene and says nothing
about the dataset whose sizes it copies.

Preprocessing: PCA of the bands to 15 components (not whitened), each component min-max
scaled to [0, 1] over the scene (``x' = (x - min_k) / (max_k - min_k)``, :func:`hsi.unit_scale`),
9x9 zero-padded patches centred on the labelled pixels, 30 % of each class for training and 70 %
for testing (HybridSN's split). Patch layout (1, 15 bands, 9, 9): a Conv3d input whose depth is
the spectral axis. The 9x9 patch and the 15 components are the same for all three presets, so the
three share one network shape (only the classifier's outputs differ): HybridSN uses 30
components for Indian Pines and 15 for Pavia University and Salinas; 15 everywhere also keeps
the CPU training within minutes.

    3D     conv1 Conv3d 1->8  k(7,3,3)   15x9x9 -> 9x7x7      lif1   (Leaky: learned beta, threshold)
           conv2 Conv3d 8->16 k(5,3,3)   -> 5x5x5             lif2
           conv3 Conv3d 16->32 k(3,3,3)  -> 3x3x3             lif3
           flat, fc Linear 864 -> classes (16; 9 for pavia_university; read-out summed over the steps)
    hybrid conv1..conv3, lif1..lif3 as above, then merge  Flatten(1, 2): 32 ch x 3 bands -> 96 ch, 3x3
           conv4 Conv2d 96->64 k3        -> 1x1               lif4
           flat, fc1 Linear 64 -> 128    lif5,   fc2 Linear 128 -> classes (read-out)

No bias, no batch norm, no dropout: the 6-bit weights (sign-magnitude per output channel, alpha *
k / 31, straight-through gradient, as in ``train_digits.py``) are the whole model. snnTorch
``Leaky`` neurons (reset by subtraction) each learn one beta and one threshold per layer
(DIET-SNN / HYPER-SNN's layer-wise leak and threshold); surrogate gradient: snnTorch's arctan.
Adam, cosine schedule. Seeded and deterministic on CPU (one thread, deterministic algorithms).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
TIME_STEPS = 5
WEIGHT_BITS = 6
BANDS = 15
PATCH = 9
EXPORT_SAMPLES = 6
# per preset: the file tag, the scene height in pixels (about 3,600 pixels each, see above), and the
# dataset's name as the provenance's note spells it (possessive, then plain)
TAGS = {"indian_pines": "ip", "pavia_university": "pu", "salinas": "sa"}
SCENE_HEIGHT = {"indian_pines": 60, "pavia_university": 80, "salinas": 92}
NAMES = {"indian_pines": ("Indian Pines'", "Indian Pines"), "pavia_university": ("Pavia University's",
                                                                                   "Pavia University"),
         "salinas": ("Salinas'", "Salinas")}


def sign_magnitude(bits: int):
    """b-bit sign-magnitude fake quantisation per output channel (snnsim.export.training)."""
    from snnsim.export.training import sign_magnitude as quant

    return quant(bits)


def _leaky():
    import snntorch as snn
    import torch
    from snntorch import surrogate

    return snn.Leaky(beta=torch.tensor(0.9), threshold=torch.tensor(1.0), learn_beta=True, learn_threshold=True,
                     spike_grad=surrogate.atan(), init_hidden=True, reset_mechanism="subtract")


def _spectral_out(bands: int) -> int:
    return bands - 6 - 4 - 2


def build_model(family: str, bands: int = BANDS, patch: int = PATCH, classes: int = 16):
    """The 3D (``"3d"``) or hybrid 3D/2D (``"hybrid"``) SNN for (1, bands, patch, patch) inputs; one
    call of ``forward`` is one time step (the read-out is the last linear layer's output)."""
    import torch.nn as nn

    d3, s3 = _spectral_out(bands), patch - 6
    if d3 < 1 or s3 < 1 or (family == "hybrid" and s3 < 3):
        raise ValueError(f"bands {bands} / patch {patch} too small for the {family} model")

    class Conv3dStem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv3d(1, 8, (7, 3, 3), bias=False)
            self.lif1 = _leaky()
            self.conv2 = nn.Conv3d(8, 16, (5, 3, 3), bias=False)
            self.lif2 = _leaky()
            self.conv3 = nn.Conv3d(16, 32, (3, 3, 3), bias=False)
            self.lif3 = _leaky()

        def stem(self, x):
            return self.lif3(self.conv3(self.lif2(self.conv2(self.lif1(self.conv1(x))))))

    class Ace3D(Conv3dStem):
        def __init__(self) -> None:
            super().__init__()
            self.flat = nn.Flatten()
            self.fc = nn.Linear(32 * d3 * s3 * s3, classes, bias=False)

        def forward(self, x):
            return self.fc(self.flat(self.stem(x)))

    class AceHybrid(Conv3dStem):
        def __init__(self) -> None:
            super().__init__()
            self.merge = nn.Flatten(1, 2)  # (32, d3, h, w) -> (32 * d3, h, w): HybridSN's reshape
            self.conv4 = nn.Conv2d(32 * d3, 64, 3, bias=False)
            self.lif4 = _leaky()
            self.flat = nn.Flatten()
            self.fc1 = nn.Linear(64 * (s3 - 2) ** 2, 128, bias=False)
            self.lif5 = _leaky()
            self.fc2 = nn.Linear(128, classes, bias=False)

        def forward(self, x):
            s = self.lif4(self.conv4(self.merge(self.stem(x))))
            return self.fc2(self.lif5(self.fc1(self.flat(s))))

    if family == "3d":
        return Ace3D()
    if family == "hybrid":
        return AceHybrid()
    raise ValueError(f"family must be '3d' or 'hybrid', not {family!r}")


def weighted(model) -> list:
    import torch.nn as nn

    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear))]


def quantise(model, bits: int = WEIGHT_BITS) -> None:
    """Put the fake quantiser on every weight (training)."""
    import torch.nn.utils.parametrize as parametrize

    for m in weighted(model):
        parametrize.register_parametrization(m, "weight", sign_magnitude(bits))


def freeze_quantised(model) -> None:
    """The quantised weights become the weights (for the export)."""
    import torch.nn.utils.parametrize as parametrize

    for m in weighted(model):
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


def run(model, x, steps: int = TIME_STEPS):
    """Direct encoding: the same input every step; the read-out is the sum of the outputs."""
    from snnsim.export.training import run_direct

    return run_direct(model, x, steps)


def scene_data(preset: str, side: int, bands: int = BANDS, patch: int = PATCH, seed: int = SEED):
    """The synthetic scene of ``preset`` scaled to height ``side`` (pixels; the width keeps the
    preset's aspect ratio), its PCA / [0, 1] scaling and the patch split, and their settings."""
    from snnsim.workload import hsi

    cube, labels, meta = hsi.synthetic_scene(preset, scale=side / hsi.PRESETS[preset][0], seed=seed)
    reduced, tf = hsi.pca(cube, bands)
    unit, lo, hi = hsi.unit_scale(reduced)
    ps = hsi.patches(unit, labels, patch, test_fraction=0.7, seed=seed)
    settings = {"scene": meta.as_dict(), "pca": {"components": bands, "whiten": False, "fitted_on": "all pixels",
                                                 "explained_variance_ratio": round(
                                                     float(tf.explained_variance_ratio.sum()), 6)},
                "input_scaling": "x' = clip((x - min_k) / (max_k - min_k), 0, 1) per PCA component over the scene",
                "patches": ps.settings, "train_patches": len(ps.y_train), "test_patches": len(ps.y_test)}
    return ps, meta, settings


def train(family: str, ps, classes: int, epochs: int, lr: float, batch: int = 64) -> tuple:
    import torch

    torch.manual_seed(SEED)
    model = build_model(family, ps.x_train.shape[2], ps.size, classes)
    quantise(model)
    xtr, ytr = torch.as_tensor(ps.x_train), torch.as_tensor(ps.y_train)
    from snnsim.export.training import train_direct

    def log(epoch: int, loss: float) -> None:
        if epoch % 5 == 4 or epoch == epochs - 1:
            print(f"  [{family}] epoch {epoch + 1:3d}  loss {loss:.4f}")

    train_direct(model, xtr, ytr, TIME_STEPS, epochs=epochs, lr=lr, batch=batch, seed=SEED, log=log)
    freeze_quantised(model)
    model.eval()
    return model


def accuracy(model, x: np.ndarray, y: np.ndarray, batch: int = 512) -> tuple[float, np.ndarray]:
    import torch

    preds = []
    with torch.no_grad():
        for i in range(0, len(y), batch):
            preds.append(run(model, torch.as_tensor(x[i:i + batch])).argmax(dim=1).numpy())
    pred = np.concatenate(preds)
    return float((pred == y).mean()), pred


def learned_neurons(model) -> dict[str, dict[str, float]]:
    import snntorch as snn

    return {n: {"beta": round(float(m.beta.detach().clamp(0, 1)), 6), "threshold": round(float(m.threshold.detach()), 6)}
            for n, m in model.named_modules() if isinstance(m, snn.Leaky)}


def export_preset(preset: str, outs: dict[str, Path], args: argparse.Namespace) -> None:
    """Train every family of ``outs`` on the scene of ``preset`` and write its trace; print the
    accuracies (recorded as printed, to 4 decimals, in ``provenance.trained``) and spike rates."""
    from snnsim.export import from_torch
    from snnsim.workload import hsi

    t0 = time.time()
    full_height = hsi.PRESETS[preset][0]
    side = args.side if args.side is not None else SCENE_HEIGHT[preset]
    ps, meta, data = scene_data(preset, side, args.bands, args.patch)
    classes = meta.classes
    print(f"{preset}: scene {meta.height}x{meta.width}x{meta.bands} -> PCA {args.bands}, patches "
          f"{args.patch}x{args.patch}: {len(ps.y_train)} train, {len(ps.y_test)} test, {classes} classes "
          f"({time.time() - t0:.1f} s)")
    possessive, name = NAMES[preset]
    for family, out in outs.items():
        t1 = time.time()
        model = train(family, ps, classes, args.epochs, args.lr)
        acc, pred = accuracy(model, ps.x_test, ps.y_test)
        acc_tr, _ = accuracy(model, ps.x_train, ps.y_train)
        print(f"[{family}] train accuracy {acc_tr:.4f}, test accuracy {acc:.4f} "
              f"({int((pred == ps.y_test).sum())}/{len(ps.y_test)} synthetic test patches), T = {TIME_STEPS}, "
              f"{time.time() - t1:.1f} s")
        n = min(args.samples, len(ps.y_test))
        trained = {"data": data, "family": family, "epochs": args.epochs, "time_steps": TIME_STEPS,
                   "encoding": "direct (the analog patch at every step)",
                   "optimizer": f"Adam lr {args.lr}, cosine schedule, batch 64", "surrogate": "snntorch atan",
                   "neurons": "snntorch.Leaky, reset by subtraction, learned layer-wise beta and threshold",
                   "learned": learned_neurons(model),
                   "weights": f"{WEIGHT_BITS}-bit sign-magnitude per output channel, quantisation-aware, no bias",
                   "seed": SEED, "test_accuracy": round(acc, 4), "train_accuracy": round(acc_tr, 4),
                   "labels": [int(v) for v in ps.y_test[:n]],
                   "exported_accuracy": round(float((pred[:n] == ps.y_test[:n]).mean()), 4),
                   "note": f"accuracy on a synthetic scene with {possessive} sizes, not on {name}"}
        gt = from_torch(model, ps.x_test[:n], TIME_STEPS, path=out, model_name=f"ace_snn_{family}",
                        dataset=f"synthetic HSI ({preset} sizes, scale {side}/{full_height}, seed {SEED}; "
                        f"test patches, first {n})", weight_bits=WEIGHT_BITS, provenance={"trained": trained})
        print(f"wrote {out}: {n} samples, T = {TIME_STEPS}, {out.stat().st_size:,} bytes")
        for node, (shape, per_step) in gt.spike_rates().items():
            print(f"  {node:6s} {'x'.join(map(str, shape)):10s} rate {float(per_step.mean()):.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=[*TAGS, "all"], default="indian_pines",
                   help="the synthetic scene's preset sizes (hsi.PRESETS), or all three; files hsi_<ip|pu|sa>_*.npz")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--samples", type=int, default=EXPORT_SAMPLES, help="test patches in each exported trace")
    p.add_argument("--families", default="3d,hybrid", help="comma-separated: 3d, hybrid")
    p.add_argument("--side", type=int, default=None,
                   help="scene height in pixels, the width keeping the preset's aspect ratio (default: "
                   + ", ".join(f"{k} {v}" for k, v in SCENE_HEIGHT.items()) + "; at most the preset's height)")
    p.add_argument("--bands", type=int, default=BANDS, help="PCA components (>= 13; HybridSN: 30 for Indian Pines)")
    p.add_argument("--patch", type=int, default=PATCH, help="odd patch size (>= 9)")
    p.add_argument("--out-dir", default=str(HERE))
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = p.parse_args(argv)
    from snnsim.workload import hsi

    presets = list(TAGS) if args.preset == "all" else [args.preset]
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    for f in families:
        if f not in ("3d", "hybrid"):
            print(f"unknown family {f!r}: use 3d, hybrid", file=sys.stderr)
            return 2
    outs = {pr: {f: Path(args.out_dir) / f"hsi_{TAGS[pr]}_{f}.npz" for f in families} for pr in presets}
    for out in (o for by_family in outs.values() for o in by_family.values()):
        if out.exists() and not args.overwrite:
            print(f"{out} exists: pass --overwrite to replace it, or --out-dir another folder", file=sys.stderr)
            return 2
    max_side = min(hsi.PRESETS[pr][0] for pr in presets)
    if not ((args.side is None or 4 <= args.side <= max_side) and args.bands >= 13 and args.patch >= 9
            and args.patch % 2):
        print(f"need 4 <= --side <= {max_side}, --bands >= 13 and an odd --patch >= 9", file=sys.stderr)
        return 2

    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    t0 = time.time()
    for preset in presets:
        export_preset(preset, outs[preset], args)
    print(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
