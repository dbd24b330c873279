"""Train three ReLU CNNs, convert them to spiking networks, and write their spike traces.

    pip install -e ".[torch]"                   # PyTorch (CPU), scikit-learn, scikit-image
    python workloads/train_conversion.py        # writes workloads/<name>_T<T>.npz and conversion_accuracy.json
    python workloads/train_conversion.py --quick --out /tmp/conv   # smoke run: few epochs, T = 32 only

These are the workloads of a DNN-to-SNN conversion study (a trained ANN converted to a rate-coded
spiking network for a neuromorphic chip such as Loihi, compared with the ANN on an edge DNN
accelerator). Each ANN is trained here on data that are on disk, then converted with
:func:`snnsim.export.ann.convert_ann` (data-based threshold balancing with percentile
normalisation, IF neurons with reset by subtraction, rate-coded input) and exported with
:func:`snnsim.export.from_torch`:

``lenet_digits``
    A LeNet-5-shaped CNN (conv 6@5x5, avg pool 2, conv 16@5x5, avg pool 2, fc 120, fc 84, fc 10)
    on scikit-learn's digits, 8x8 upsampled bilinearly to 32x32 (LeNet-5's input size).
``nxtf_mnist``
    The shape of the NxTF MNIST tutorial network (conv 16@5x5 stride 2, conv 32@3x3, conv 64@3x3
    stride 2, conv 10@4x4 as the readout; no padding, 28x28x1 -> 12x12 -> 10x10 -> 4x4 -> 1x1) on
    the digits upsampled bilinearly to 28x28.
``cnn_photos``
    A 5-conv CNN with batch norm and average pooling, then two fc layers, on 32x32 grey patches
    cut from twelve of scikit-image's bundled photos (the class is the photo; train patches from
    the left 70 % of each photo, test patches from the right 30 %; see :func:`photo_patches`).

Every network is converted at T = 32, 64 and 128 steps (nxtf_mnist: T = 100, the NxTF paper's
setting); the ANN and SNN accuracies are measured on the whole test split, and each trace holds
the first few test samples. ``conversion_accuracy.json`` collects the accuracies, the parameter
counts and the dense multiply-accumulates per inference.

Seeded and deterministic on CPU (one thread, deterministic algorithms): the same versions give
the same weights, accuracies and bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
PERCENTILE = 99.9
CALIBRATION_SAMPLES = 500
#: scikit-image photos that ship with the package (no download); ``cat`` is ``chelsea`` again
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
          "hubble_deep_field", "moon", "rocket")
PHOTO_SHORT_SIDE = 256  # each photo is resized so that its shorter side has this many pixels
PATCH = 32
TRAIN_FRACTION = 0.7    # the left 70 % of each photo's columns give the training patches
PATCHES_TRAIN = 1000    # per photo
PATCHES_TEST = 100      # per photo


# ----------------------------------------------------------------------------- data

def digits(size: int) -> dict[str, np.ndarray]:
    """scikit-learn's digits (ink 0..16 scaled to [0, 1]) upsampled bilinearly to ``size`` x
    ``size`` (``align_corners=False``), split 75 / 25 stratified with ``random_state`` SEED:
    float32 (N, 1, size, size) arrays and int64 labels for ``train`` and ``test``."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.as_tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0.0, 1.0).numpy().astype(np.float32)
    y = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=SEED)
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}


def _photo(name: str) -> np.ndarray:
    """One scikit-image photo as grey float64 in [0, 1], resized (anti-aliased) so that its
    shorter side is PHOTO_SHORT_SIDE pixels."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    img = np.asarray(getattr(skimage.data, name)())
    img = rgb2gray(img[..., :3]) if img.ndim == 3 else img.astype(np.float64) / 255.0
    h, w = img.shape
    k = PHOTO_SHORT_SIDE / min(h, w)
    return np.clip(resize(img, (round(h * k), round(w * k)), anti_aliasing=True), 0.0, 1.0)


def _cut(img: np.ndarray, x0: int, x1: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` PATCH x PATCH patches whose columns lie in [x0, x1), at uniform random positions,
    each flipped left-right and up-down with probability 1/2."""
    h = img.shape[0]
    out = np.empty((n, PATCH, PATCH), np.float32)
    for i in range(n):
        r = int(rng.integers(0, h - PATCH + 1))
        c = int(rng.integers(x0, x1 - PATCH + 1))
        p = img[r:r + PATCH, c:c + PATCH]
        if rng.random() < 0.5:
            p = p[:, ::-1]
        if rng.random() < 0.5:
            p = p[::-1, :]
        out[i] = p
    return out


def photo_patches(n_train: int = PATCHES_TRAIN, n_test: int = PATCHES_TEST) -> dict[str, np.ndarray]:
    """The photo-patch classification task: class k is photo ``PHOTOS[k]``.

    Each photo is made grey (``skimage.color.rgb2gray`` for RGB) and resized so that its shorter
    side is 256 pixels. Its columns are split at 70 %: ``n_train`` training patches lie wholly
    in the left part, ``n_test`` test patches wholly in the right part (no pixel is shared),
    32x32 at positions drawn uniformly from one ``numpy`` generator seeded with SEED, each
    flipped left-right and up-down with probability 1/2. Both splits are then shuffled with
    the same generator (so the first test patches, which go into the traces, mix the photos). float32 (N, 1, 32, 32) in [0, 1] and int64 labels."""
    rng = np.random.default_rng(SEED)
    xs_tr, ys_tr, xs_te, ys_te = [], [], [], []
    for k, name in enumerate(PHOTOS):
        img = _photo(name)
        split = int(img.shape[1] * TRAIN_FRACTION)
        xs_tr.append(_cut(img, 0, split, n_train, rng))
        xs_te.append(_cut(img, split, img.shape[1], n_test, rng))
        ys_tr.append(np.full(n_train, k, np.int64))
        ys_te.append(np.full(n_test, k, np.int64))
    x_tr, y_tr = np.concatenate(xs_tr)[:, None], np.concatenate(ys_tr)
    x_te, y_te = np.concatenate(xs_te)[:, None], np.concatenate(ys_te)
    p_tr, p_te = rng.permutation(len(y_tr)), rng.permutation(len(y_te))
    return {"x_train": x_tr[p_tr], "y_train": y_tr[p_tr], "x_test": x_te[p_te], "y_test": y_te[p_te]}


# ----------------------------------------------------------------------------- networks

def lenet():
    """LeNet-5 with ReLUs and average pooling, for 1x32x32 input and 10 classes."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.AvgPool2d(2),        # 6x28x28 -> 6x14x14
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),       # 16x10x10 -> 16x5x5
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def nxtf_mnist():
    """The NxTF MNIST tutorial network's shape, no padding; the last conv is the readout."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(),              # 28 -> 12
        nn.Conv2d(16, 32, 3), nn.ReLU(),                       # 12 -> 10
        nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(),             # 10 -> 4
        nn.Conv2d(64, 10, 4),                                  # 4 -> 1 (the readout)
        nn.Flatten())


def cnn_photos(classes: int = len(PHOTOS)):
    """Five 3x3 convs with batch norm, three average pools, two fc layers, for 1x32x32 input.

    The first conv has stride 2 and the widths stay small so that a trace of 8 samples at
    T = 128 fits in about 3 MB (spikes are stored one bit per neuron and step)."""
    from torch import nn

    def block(cin: int, cout: int, stride: int = 1) -> list:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16, 2),                                      # 16x16x16
        *block(16, 24), nn.AvgPool2d(2),                       # 24x16x16 -> 24x8x8
        *block(24, 32),                                        # 32x8x8
        *block(32, 64), nn.AvgPool2d(2),                       # 64x8x8 -> 64x4x4
        *block(64, 64), nn.AvgPool2d(2),                       # 64x4x4 -> 64x2x2
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(256, 64), nn.ReLU(),
        nn.Linear(64, classes))


def layer_table(model, x) -> tuple[list[dict], int]:
    """Each module's output shape on one sample, with the dense multiply-accumulates of every
    conv / linear (output elements x fan-in); the total MACs per inference."""
    import torch
    from torch import nn

    rows: list[dict] = []

    def hook(mod, _inp, out):
        macs = 0
        if isinstance(mod, nn.Conv2d):
            macs = out[0].numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            macs = mod.in_features * mod.out_features
        rows.append({"module": type(mod).__name__, "shape": list(out.shape[1:]), "macs": int(macs)})

    handles = [m.register_forward_hook(hook) for m in model]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.as_tensor(x[:1]))
    model.train(was_training)
    for h in handles:
        h.remove()
    return rows, sum(r["macs"] for r in rows)


# ----------------------------------------------------------------------------- training

def train(model, data: dict[str, np.ndarray], epochs: int, lr: float, weight_decay: float = 0.0,
          batch: int = 64) -> dict:
    """Adam with a cosine learning-rate schedule and cross-entropy, seeded batch order; returns
    the training record (accuracies are fractions of the test / training split)."""
    import torch
    from torch.nn import functional as F

    xtr, ytr = torch.as_tensor(data["x_train"]), torch.as_tensor(data["y_train"])
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(ytr) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    g = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=g)
        total = 0.0
        for i in range(0, len(ytr), batch):
            b = perm[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[b]), ytr[b])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        if epoch == epochs - 1 or epoch % 5 == 4:
            print(f"  epoch {epoch + 1:3d}  loss {total / len(ytr):.4f}", flush=True)
    model.eval()
    return {"optimizer": "Adam", "lr": lr, "weight_decay": weight_decay, "schedule": "cosine", "batch": batch,
            "epochs": epochs, "seed": SEED, "train_samples": len(ytr),
            "train_accuracy": accuracy(model, data["x_train"], data["y_train"]),
            "test_accuracy": accuracy(model, data["x_test"], data["y_test"])}


def predict(model, x: np.ndarray) -> np.ndarray:
    """The classes ``model`` predicts for ``x`` (in batches of 256)."""
    import torch

    with torch.no_grad():
        return torch.cat([model(torch.as_tensor(x[i:i + 256])).argmax(1) for i in range(0, len(x), 256)]).numpy()


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on ``x``."""
    return float((predict(model, x) == y).mean())


def per_class_accuracy(model, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Top-1 accuracy of ``model`` on the samples of each class 0, 1, ..., in class order."""
    pred = predict(model, x)
    return [float((pred[y == k] == k).mean()) for k in range(int(y.max()) + 1)]


# ----------------------------------------------------------------------------- conversion

def convert_and_export(name: str, model, data: dict[str, np.ndarray], steps: list[int], out: Path,
                       samples: int, dataset: str, trained: dict) -> dict[str, dict]:
    """Convert ``model`` at every T in ``steps`` (rate input, percentile normalisation, reset by
    subtraction, calibrated on the first training samples), measure the SNN on the whole test
    split, and write ``<name>_T<T>.npz`` holding the first ``samples`` test samples. Returns the
    per-T results for the JSON summary."""
    import torch
    from snnsim.export import from_torch
    from snnsim.export.ann import convert_ann

    has_max = any(type(m).__name__.startswith("MaxPool") for m in model.modules())
    results = {}
    for t in steps:
        t0 = time.time()
        res = convert_ann(model, data["x_train"][:CALIBRATION_SAMPLES], t, method="percentile",
                          percentile=PERCENTILE, input_coding="rate", maxpool="avg" if has_max else "or",
                          eval_inputs=data["x_test"], eval_labels=data["y_test"])
        path = out / f"{name}_T{t}.npz"
        labels = [int(v) for v in data["y_test"][:samples]]
        scores = res.snn.run(torch.as_tensor(data["x_test"][:samples]), t).sum(0)
        preds = [int(v) for v in scores.reshape(samples, -1).argmax(1)]
        from_torch(res.snn, data["x_test"][:samples], t, path, model_name=name, dataset=dataset,
                   provenance={"conversion": res.provenance(),
                               "trained": {**trained, "labels": labels, "snn_predictions": preds,
                                           "generator": "workloads/train_conversion.py"}})
        size = path.stat().st_size
        print(f"  T={t:4d}  ANN {res.ann_accuracy:.4f}  SNN {res.snn_accuracy:.4f}  "
              f"({len(data['y_test'])} test samples)  {path.name} {size:,} bytes  {time.time() - t0:.1f} s",
              flush=True)
        results[str(t)] = {"snn_accuracy": res.snn_accuracy, "trace": path.name, "trace_bytes": size,
                           "trace_samples": samples, "trace_labels": labels, "trace_snn_predictions": preds,
                           "lambdas": res.lambdas}
    return results


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as JSON atomically (a temporary file in the same folder, then os.replace)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates the file private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE), help="folder for the traces and conversion_accuracy.json "
                   "(default: the workloads folder)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, T = 32 only, fewer photo patches")
    p.add_argument("--samples", type=int, default=8, help="test samples per trace (default 8)")
    p.add_argument("--only", nargs="+", choices=("lenet_digits", "nxtf_mnist", "cnn_photos"),
                   help="build only these networks (the JSON then holds only them)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import skimage
    import sklearn
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    t_start = time.time()

    quick = args.quick
    specs = {
        "lenet_digits": dict(build=lenet, data=lambda: digits(32), epochs=2 if quick else 30, lr=2e-3, wd=0.0,
                             steps=[32] if quick else [32, 64, 128],
                             dataset="scikit-learn load_digits (UCI hand-written digits), 8x8 scaled to [0, 1], "
                                     "bilinear to 32x32; stratified 75/25 split, random_state 0"),
        "nxtf_mnist": dict(build=nxtf_mnist, data=lambda: digits(28), epochs=2 if quick else 30, lr=2e-3, wd=0.0,
                           steps=[32] if quick else [100],
                           dataset="scikit-learn load_digits (UCI hand-written digits), 8x8 scaled to [0, 1], "
                                   "bilinear to 28x28; stratified 75/25 split, random_state 0"),
        "cnn_photos": dict(build=cnn_photos,
                           data=(lambda: photo_patches(60, 20)) if quick else photo_patches,
                           epochs=2 if quick else 20, lr=3e-3, wd=5e-4, steps=[32] if quick else [32, 64, 128],
                           dataset=f"32x32 grey patches of {len(PHOTOS)} scikit-image photos "
                                   f"({', '.join(PHOTOS)}), class = photo; train from the left 70 % of "
                                   "each photo, test from the right 30 %; seed 0"),
    }
    summary: dict = {"generator": "workloads/train_conversion.py", "quick": quick, "seed": SEED,
                     "conversion": {"function": "snnsim.export.ann.convert_ann", "method": "percentile",
                                    "percentile": PERCENTILE, "input_coding": "rate", "reset": "subtract",
                                    "calibration_samples": CALIBRATION_SAMPLES},
                     "versions": {"torch": torch.__version__, "numpy": np.__version__,
                                  "scikit-learn": sklearn.__version__, "scikit-image": skimage.__version__},
                     "networks": {}}
    for name, s in specs.items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        print(f"{name}:", flush=True)
        data = s["data"]()
        torch.manual_seed(SEED)
        model = s["build"]()
        trained = train(model, data, s["epochs"], s["lr"], s["wd"])
        rows, macs = layer_table(model, data["x_test"])
        params = sum(int(v.numel()) for v in model.parameters())
        print(f"  ANN test accuracy {trained['test_accuracy']:.4f} (train {trained['train_accuracy']:.4f}); "
              f"{params:,} parameters, {macs:,} MACs", flush=True)
        per_t = convert_and_export(name, model, data, s["steps"], out, args.samples, s["dataset"], trained)
        summary["networks"][name] = {
            "dataset": s["dataset"],
            "classes": list(PHOTOS) if name == "cnn_photos" else [str(k) for k in range(10)],
            "ann_test_accuracy": trained["test_accuracy"],
            "ann_train_accuracy": trained["train_accuracy"],
            "ann_test_accuracy_per_class": per_class_accuracy(model, data["x_test"], data["y_test"]),
            "snn_test_accuracy": {t: r["snn_accuracy"] for t, r in per_t.items()},
            "test_samples": len(data["y_test"]), "train_samples": len(data["y_train"]), "seed": SEED,
            "parameters": params, "dense_macs": macs, "layers": rows, "training": trained, "traces": per_t}
        print(f"  {name}: {time.time() - t0:.1f} s", flush=True)
    write_json(out / "conversion_accuracy.json", summary)
    print(f"wrote {out / 'conversion_accuracy.json'} ({time.time() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
