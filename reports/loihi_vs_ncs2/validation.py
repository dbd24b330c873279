"""Validation of the Loihi-class and NCS2-class targets against measured figures
(pim-loihi-ncs2.md B.5 and C.2), one row each.

    python reports/loihi_vs_ncs2/validation.py   # writes validation.json and validation.md here

Rows (measured value, source; ours from the named run):

* NxTF MNIST CNN (Rueckauer et al., ACM JETC 2022; 16@5x5/2 -> 32@3x3 -> 64@3x3/2 -> 10@4x4,
  100 steps): 14 cores, 0.66 mJ, 6.65 ms, EDP 4.38 uJ s per inference, host I/O excluded. Ours:
  workloads/nxtf_mnist_T100.npz (the same shapes trained on digits upsampled to 28x28) on
  hwconfigs/loihi.yaml with loihi.t_io_sample_us=0.
* NxSDK MNIST tutorial (the same network at 512 steps): 60.8 us per step (57.4 spiking + 3.4
  management), 1.76 ms I/O per image. Ours: the mean step time of the same run (our T = 100).
* Keyword spotter (Blouw et al. 2019, Nengo, 2 x 256 hidden neurons): dynamic power 0.081 W.
  Only the shapes are known: 390 inputs -> 256 -> 256 -> 29 with random (He) weights, converted
  with from_ann on random inputs in [0, 1] (a real forward pass gives the activity), T = 100.
  Dynamic power (dynamic energy / time of the steps) barely depends on T.
* DVS gesture (SANA-FE snn/dvs.yaml, converted with SNN Toolbox): 1 + 8 + 8 + 22 + 9 + 1 = 49
  cores in its stored mapping. Ours: the same shapes (2x32x32 -> 16@4x4/2 -> 32@3x3 -> 64@3x3
  -> 11@3x3 -> 11), random weights and inputs, from_ann, T = 16; cores per layer.
* NxSDK CIFAR-10 tutorial ("pseudo-MobileNet", 405 k parameters, 3.93 M synapses, SNN Toolbox
  conversion, soft reset): 157 cores on 2 chips, 137.3 us per step at 512 steps. Its layer table
  is not public: ours is a MobileNet-style stack of ~405 k parameters [A] (see ``_cifar``), random
  weights, 32x32 RGB photo patches, T = 32.
* NCS2 MobileNet v2 (aallan/benchmarking-ml-on-the-edge): 80.4 ms over USB3 (the calibration of
  the utilisations), 118.6 ms over USB2 (a prediction) with hwconfigs/ncs2.yaml and ncs2_usb2.yaml.

SANA-FE's own accuracy against Loihi (energy within 12 %, latency within 25 %) is the bar the
table's errors are read against.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "simulator"))
sys.path.insert(0, str(HERE))

from study import write_atomic  # noqa: E402

BAR = {"energy": 0.12, "latency": 0.25}


def _sim(hwconfig: str, trace: Path, overrides: list[str] | None = None) -> Any:
    from snnsim.hwconfig import load_hardware
    from snnsim.simulation import simulate
    from snnsim.workload.trace import load_workload

    return simulate(load_hardware(ROOT / hwconfig, overrides or []), load_workload(trace))


def _random_converted(model: Any, x: Any, steps: int, path: Path) -> Path:
    from snnsim.export import from_ann

    from_ann(model, x, steps, path, input_coding="rate")
    return path


def _kws(tmp: Path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(390, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 29))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    x = torch.rand(4, 390)
    return _random_converted(model.eval(), x, 100, tmp / "kws.npz")


def _dvs(tmp: Path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 16, 4, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(),
                          nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 11, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(11 * 9 * 9, 11))
    x = (torch.rand(2, 2, 32, 32) < 0.2).float()  # event-count frames: a fifth of the pixels active
    return _random_converted(model.eval(), x, 16, tmp / "dvs.npz")


def _cifar(tmp: Path) -> Path:
    """A CIFAR-class "pseudo-MobileNet" of ~405 k parameters [A: the tutorial's layer table is not
    public, only its parameters, synapses and cores]: a 3x3 conv, then depthwise-separable blocks
    (3x3 depthwise + 1x1 pointwise), average pooling and a linear readout; random (He) weights,
    inputs 32x32 RGB patches of scikit-image photos (a real forward pass gives the activity)."""
    import numpy as np
    import torch
    from skimage import data
    from torch import nn

    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, padding=1), nn.ReLU()]
    # the last map is 256 x 4 x 4 = 4096 values: the readout's fan-in through the average pool fits
    # one core's 4096 input axons
    for c_in, c_out, s in ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 256, 1),
                           (256, 256, 1), (256, 256, 1), (256, 256, 2)):
        layers += [nn.Conv2d(c_in, c_in, 3, stride=s, padding=1, groups=c_in), nn.ReLU(),
                   nn.Conv2d(c_in, c_out, 1), nn.ReLU()]
    layers += [nn.AvgPool2d(4), nn.Flatten(), nn.Linear(256, 10)]
    model = nn.Sequential(*layers)
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    rng = np.random.default_rng(0)
    patches = []
    for img in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket()):
        y, x = rng.integers(0, img.shape[0] - 32), rng.integers(0, img.shape[1] - 32)
        patches.append(img[y:y + 32, x:x + 32].transpose(2, 0, 1) / 255.0)
    x = torch.tensor(np.stack(patches), dtype=torch.float32)
    return _random_converted(model.eval(), x[:2], 32, tmp / "cifar.npz")


def _err(ours: float, measured: float) -> float:
    return ours / measured - 1.0


def compute() -> dict[str, Any]:
    rows = []
    nxtf = ROOT / "workloads" / "nxtf_mnist_T100.npz"
    if nxtf.exists():
        rep = _sim("hwconfigs/loihi.yaml", nxtf, ["loihi.t_io_sample_us=0"])
        s = rep.summary
        e, lat = s["energy"]["total_pj_per_frame"] * 1e-12, s["delay"]["latency_ps_mean"] * 1e-12
        nm = s["neuromorphic"]
        rows += [
            {"row": "NxTF MNIST: cores", "measured": 14, "ours": nm["cores_used"], "unit": "cores"},
            {"row": "NxTF MNIST: energy per inference (total)", "measured": 0.66e-3, "ours": e, "unit": "J",
             "error": _err(e, 0.66e-3), "bar": BAR["energy"]},
            {"row": "NxTF MNIST: energy per inference (dynamic only)", "measured": 0.66e-3,
             "ours": s["energy"]["dynamic_pj_per_frame"] * 1e-12, "unit": "J",
             "error": _err(s["energy"]["dynamic_pj_per_frame"] * 1e-12, 0.66e-3)},
            {"row": "NxTF MNIST: latency per inference (100 steps)", "measured": 6.65e-3, "ours": lat, "unit": "s",
             "error": _err(lat, 6.65e-3), "bar": BAR["latency"]},
            {"row": "NxTF MNIST: EDP", "measured": 4.38e-6, "ours": e * lat, "unit": "J s",
             "error": _err(e * lat, 4.38e-6)},
            {"row": "NxSDK MNIST tutorial: time per step", "measured": 60.8e-6, "ours": nm["step_ps_mean"] * 1e-12,
             "unit": "s", "error": _err(nm["step_ps_mean"] * 1e-12, 60.8e-6), "bar": BAR["latency"]},
            {"row": "NxSDK MNIST tutorial: mean power over the run", "measured": 0.66e-3 / 6.65e-3,
             "ours": s["power"]["total_mw"] * 1e-3, "unit": "W", "error": _err(s["power"]["total_mw"] * 1e-3, 0.0992)},
        ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            kws, dvs = _kws(tmp), _dvs(tmp)
        except ImportError:
            kws = dvs = None
        if kws is not None:
            s = _sim("hwconfigs/loihi.yaml", kws, ["loihi.t_io_sample_us=0"]).summary
            steps_s = s["neuromorphic"]["step_ps_mean"] * 1e-12 * s["time_steps"]
            dyn = s["energy"]["dynamic_pj_per_frame"] * 1e-12 / steps_s
            rows.append({"row": "KWS 2x256 (Blouw 2019): dynamic power", "measured": 0.081, "ours": dyn, "unit": "W",
                         "error": _err(dyn, 0.081), "bar": BAR["energy"],
                         "note": f"{s['neuromorphic']['cores_used']} cores, random weights, T = 100"})
        try:
            cifar = _cifar(tmp)
        except ImportError:
            cifar = None
        if cifar is not None:
            rep = _sim("hwconfigs/loihi.yaml", cifar)
            nm = rep.summary["neuromorphic"]
            rows += [{"row": "NxSDK CIFAR tutorial (pseudo-MobileNet): cores", "measured": 157, "ours": nm["cores_used"],
                      "unit": "cores", "note": f"{nm['chips_used']} chips; tutorial: 2 chips (128 + 29)"},
                     {"row": "NxSDK CIFAR tutorial (pseudo-MobileNet): time per step", "measured": 137.3e-6,
                      "ours": nm["step_ps_mean"] * 1e-12, "unit": "s",
                      "error": _err(nm["step_ps_mean"] * 1e-12, 137.3e-6), "bar": BAR["latency"],
                      "note": "our layer table [A], random weights, T = 32 (tutorial: 512)"}]
        if dvs is not None:
            rep = _sim("hwconfigs/loihi.yaml", dvs)
            per = [la["cores"] for la in rep.meta["loihi"]["layers"]]
            rows.append({"row": "DVS gesture (SANA-FE stored mapping): cores per layer", "measured": 49,
                         "ours": sum(per), "unit": "cores", "note": f"ours {per}, SANA-FE [1, 8, 8, 22, 9, 1]"})
    from snnsim.hw.ncs2 import ncs2_config, sample_time_ps
    from snnsim.hw.ncs2_nets import mobilenet_v2
    from snnsim.hwconfig import load_hardware

    layers, n_in, n_out = mobilenet_v2()
    for name, hwc, measured, role in (("USB3", "hwconfigs/ncs2.yaml", 80.4e-3, "calibration"),
                                      ("USB2", "hwconfigs/ncs2_usb2.yaml", 118.6e-3, "prediction")):
        t = sample_time_ps(ncs2_config(load_hardware(ROOT / hwc)), layers, n_in, n_out) * 1e-12
        rows.append({"row": f"NCS2 MobileNet v2 over {name}: latency ({role})", "measured": measured, "ours": t,
                     "unit": "s", "error": _err(t, measured), "bar": BAR["latency"]})
    return {"rows": rows, "bar": BAR}


def markdown(v: dict[str, Any]) -> str:
    lines = ["## Validation against measured figures", "",
             "Generated by `python reports/loihi_vs_ncs2/validation.py` (its docstring says how each row is run). "
             "The bar is SANA-FE's own accuracy against Loihi: energy within 12 %, latency within 25 %.", "",
             "| row | measured | ours | error | within the bar |", "|---|---:|---:|---:|---|"]
    for r in v["rows"]:
        err = r.get("error")
        ok = "-" if "bar" not in r else ("yes" if abs(err) <= r["bar"] else "no")
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"| {r['row']}{note} | {r['measured']:.4g} {r['unit']} | {r['ours']:.4g} {r['unit']} | "
                     f"{'-' if err is None else f'{100 * err:+.1f} %'} | {ok} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    v = compute()
    write_atomic(HERE / "validation.json", json.dumps(v, indent=1, sort_keys=True) + "\n")
    write_atomic(HERE / "validation.md", markdown(v))
    print(markdown(v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
