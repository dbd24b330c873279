"""Run the captured model for T steps and record what its ops gave, from its own forward pass.

Direct encoding: a single-step model is called T times on the same analog frame (B, ...), a
multi-step one once on the frame repeated as (T, B, ...), a model that repeats its input itself
once on (B, ...); every neuron is reset first. The fx graph runs through an interpreter that
keeps the output of every op asked for (and a neuron's input current); a module inside a
SpikingJelly container, or any module of the nn.Sequential fallback, is recorded by a forward
hook. A recurrent neuron's recurrent current is recorded by a hook on its ``recurrent`` submodule
(its first call per step: snnTorch's reset to zero evaluates it twice). Every record is returned
as (samples, T, *shape) float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SnnsimError, UsageError, WorkloadError
from .adapters import NeuronAdapters
from .capture import Capture, reset_all


@dataclass
class Recording:
    """Per op index: its outputs and (neurons) input currents and recurrent currents."""

    out: dict[int, np.ndarray] = field(default_factory=dict)
    current: dict[int, np.ndarray] = field(default_factory=dict)
    recurrent: dict[int, np.ndarray] = field(default_factory=dict)


def _first(t: Any) -> Any:
    return t[0] if isinstance(t, (tuple, list)) else t


def record(cap: Capture, x: np.ndarray, time_steps: int, wanted: set[int], neurons: dict[int, Any],
           adapters: NeuronAdapters) -> Recording:
    """Run ``cap``'s model on ``x`` (samples, ...) and record the ops in ``wanted`` and, for each
    neuron op in ``neurons`` (op index -> its recurrent submodule or None), its input current."""
    import torch
    import torch.fx as fx

    ops = cap.ops
    outs: dict[int, list[Any]] = {i: [] for i in wanted | set(neurons)}
    ins: dict[int, list[Any]] = {i: [] for i in neurons}
    recs: dict[int, list[Any]] = {i: [] for i, r in neurons.items() if r is not None}
    by_fx = {op.fx_name: i for i, op in enumerate(ops) if op.fx_name and i in outs}
    handles = []

    def keep(store: list[Any], t: Any) -> None:
        store.append(t.detach().float().cpu().clone())

    for i in outs:
        op = ops[i]
        if op.fx_name and cap.graph_module is not None:
            continue
        def hook(_m: Any, inp: Any, out: Any, i: int = i) -> None:
            keep(outs[i], _first(out))
            if i in ins:
                keep(ins[i], inp[0])
        handles.append(op.module.register_forward_hook(hook))
    fresh: dict[int, bool] = {}
    for i, rec_module in neurons.items():
        if rec_module is None:
            continue
        def pre(_m: Any, _inp: Any, i: int = i) -> None:
            fresh[i] = True

        def rec_hook(_m: Any, _inp: Any, out: Any, i: int = i) -> None:
            if fresh.get(i):
                keep(recs[i], out)
                fresh[i] = False
        handles.append(ops[i].module.register_forward_pre_hook(pre))
        handles.append(rec_module.register_forward_hook(rec_hook))

    class Recorder(fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            i = by_fx.get(n.name)
            if i is not None:
                keep(outs[i], _first(out))
                if i in ins:
                    args, _ = self.fetch_args_kwargs_from_env(n)
                    keep(ins[i], args[0])
            return out

    param = next(iter(cap.twin.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    dev = param.device if param is not None else torch.device("cpu")
    xt = torch.as_tensor(x, dtype=dtype, device=dev)
    run = (lambda a: Recorder(cap.graph_module).run(a)) if cap.graph_module is not None else cap.twin
    try:
        reset_all(cap.twin, adapters)
        with torch.no_grad():
            if cap.repeats:
                run(xt)
            elif cap.lead == 2:
                run(xt.unsqueeze(0).expand(time_steps, *xt.shape).contiguous())
            else:
                for _ in range(time_steps):
                    run(xt)
    except SnnsimError:
        raise
    except Exception as e:
        raise UsageError("the model fails on the given inputs", key="inputs",
                         expected="inputs of the shape the model was built for",
                         found=f"shape {list(x.shape)}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    finally:
        for h in handles:
            h.remove()
        reset_all(cap.twin, adapters)
    samples = x.shape[0]
    result = Recording()
    for store, target in ((outs, result.out), (ins, result.current), (recs, result.recurrent)):
        for i, items in store.items():
            target[i] = _steps(ops[i].name, items, tuple(ops[i].shape or ()), samples, time_steps)
    return result


def _steps(name: str, items: list[Any], shape: tuple[int, ...], samples: int, steps: int) -> np.ndarray:
    """Recorded tensors (T calls of (B, ...), one of (T, B, ...) or of (T * B, ...)) as (B, T, ...)."""
    import torch

    if not items:
        raise WorkloadError(f"'{name}' never ran", key=name, expected=f"{steps} steps", found="no call")
    rows = torch.cat([t.reshape(-1, *shape) for t in items])
    if rows.shape[0] != steps * samples:
        raise WorkloadError(f"'{name}' ran {len(items)} times for {samples} samples x {steps} steps", key=name,
                            expected="one call per step (or one on the whole sequence)",
                            found=f"{rows.shape[0]} values per neuron",
                            suggestion="a module called at several places keeps one state for all of them: give "
                            "each call its own module")
    out = rows.reshape(steps, samples, *shape).transpose(0, 1).numpy()
    return np.ascontiguousarray(out, np.float32)
