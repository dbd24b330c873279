"""Reference model of the NCS2-class dense accelerator (:mod:`snnsim.hw.ncs2`), written plainly:
plain Python loops over the trace's nodes (format v2, gathered from each layer's synapses,
passes and neuron) or layers (format v1); MACs counted one by one by enumerating every output
value and every kernel tap it reads; weights counted from the trace's stored arrays when it has
them; times summed as exact fractions of ps and rounded up term by term; one record list.

It returns the records :class:`snnsim.hw.ncs2.Ncs2`'s plan gives, value for value. Slow on purpose:
meant for small graphs in tests.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from ..errors import MappingError
from ..report.report import Record

RUNNABLE = ("conv1d", "conv2d", "conv3d", "linear", "avgpool", "sumpool", "maxpool", "add",
            "neuron", "bias", "affine", "scale", "flatten", "reshape")


def _positions(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for n in shape:
        out = [p + (i,) for p in out for i in range(n)]
    return out


def _ints(v: Any, rank: int) -> tuple[int, ...]:
    return tuple([v] * rank) if isinstance(v, int) else tuple(v)


def _count_window(out_shape: tuple[int, ...], per_position_channels: int, kernel: tuple[int, ...]) -> int:
    """One MAC for every output value, every input channel it reduces over, every kernel tap."""
    macs = 0
    for _channel in range(out_shape[0]):
        for _position in _positions(tuple(out_shape[1:])):
            for _c in range(per_position_channels):
                for _tap in _positions(kernel):
                    macs += 1
    return macs


def _layer_row(name: str, layer: str, kind: str, macs: int, weights: int, ins: int, outs: int) -> dict:
    return {"name": name, "layer": layer, "type": kind, "macs": macs, "weights": weights, "in": ins, "out": outs}


def _node_rows(wl: Any) -> list[dict]:
    by = {n.name: n for n in wl.nodes}
    for n in wl.nodes:
        if n.op not in RUNNABLE:
            raise MappingError("no dense equivalent", file=wl.source, key=f"nodes.{n.name}", found=n.op)
    listed = [n.name for n in wl.nodes]

    def shape(src: str) -> tuple[int, ...]:
        return tuple(wl.input_shape) if src == "input" else tuple(by[src].out_shape)

    rows = []
    for la in wl.layers:
        p = la.parts
        mine: set[str] = {p.output.name}
        for sy in p.synapses:
            mine.update(n.name for n in sy.chain)
        mine.update(n.name for n in p.passes)
        if p.neuron is not None:
            mine.add(p.neuron.name)
        for name in sorted(mine, key=listed.index):
            n = by[name]
            out = tuple(n.out_shape)
            ins = sum(math.prod(shape(s)) for s in n.inputs)
            first = shape(n.inputs[0])
            if n.op == "linear":
                macs = 0
                for _o in range(out[0]):
                    for _i in range(first[0]):
                        macs += 1
                w = wl.node_arrays.get(f"weights/{name}")
                weights = w.size if w is not None else out[0] * first[0]
            elif n.op.startswith("conv"):
                groups = int(n.params.get("groups", 1))
                kernel = _ints(n.params["kernel"], len(out) - 1)
                macs = _count_window(out, first[0] // groups, kernel)
                w = wl.node_arrays.get(f"weights/{name}")
                weights = w.size if w is not None else out[0] * (first[0] // groups) * math.prod(kernel)
            elif n.op.endswith("pool"):
                macs = _count_window(out, 1, _ints(n.params["kernel"], len(out) - 1))
                weights = 0
            elif n.op == "add":
                macs = 0
                for _value in range(math.prod(out)):
                    for _extra in n.inputs[1:]:
                        macs += 1
                weights = 0
            else:
                continue  # fused or a relabelling: free
            if n.op == "linear" or n.op.startswith("conv"):
                if n.params.get("bias"):
                    b = wl.node_arrays.get(f"bias/{name}")
                    weights += b.size if b is not None else out[0]
                if n.op == "linear":
                    kind = "fc"
                elif int(n.params.get("groups", 1)) == first[0] == out[0] and first[0] > 1:
                    kind = "depthwise"
                else:
                    kind = "conv"
            else:
                kind = "pool" if n.op.endswith("pool") else "eltwise"
            rows.append(_layer_row(name, la.name, kind, macs, int(weights), ins, math.prod(out)))
    return rows


def _v1_rows(wl: Any) -> list[dict]:
    from ..workload.graph import check_graph_once

    check_graph_once(wl, wl.layers, wl.input_shape)
    size = {la.name: math.prod(la.out_shape) for la in wl.layers}
    size["input"] = math.prod(wl.input_shape)
    rows = []
    for la in wl.layers:
        ins = sum(size[s] for s in la.inputs)
        if la.op in ("conv2d", "conv3d"):
            macs = _count_window(tuple(la.out_shape), la.in_shape[0] // la.groups, tuple(la.kernel))
            weights = la.out_shape[0] * (la.in_shape[0] // la.groups) * math.prod(la.kernel)
            dw = la.groups == la.in_shape[0] == la.out_shape[0] and la.groups > 1
            rows.append(_layer_row(la.name, la.name, "depthwise" if dw else "conv", macs, weights, ins,
                                   size[la.name]))
        elif la.op == "linear":
            macs = sum(1 for _o in range(la.out_shape[0]) for _i in range(la.in_shape[0]))
            rows.append(_layer_row(la.name, la.name, "fc", macs, macs, ins, size[la.name]))
        elif la.op in ("avgpool", "maxpool"):
            rows.append(_layer_row(la.name, la.name, "pool", _count_window(tuple(la.out_shape), 1, tuple(la.kernel)),
                                   0, ins, size[la.name]))
        elif la.op == "add":
            macs = sum(1 for _v in range(size[la.name]) for _x in la.inputs[1:])
            rows.append(_layer_row(la.name, la.name, "eltwise", macs, 0, ins, size[la.name]))
        elif la.op != "flatten":
            raise MappingError("no dense equivalent", file=wl.source, key=f"layers.{la.name}", found=la.op)
    return rows


def _outputs(wl: Any) -> int:
    total = 0
    if wl.nodes:
        for n in wl.nodes:
            if n.op != "delay" and not any(n.name in m.inputs for m in wl.nodes if m.op != "delay"):
                total += math.prod(n.out_shape)
        return total
    for la in wl.layers:
        if not any(la.name in m.inputs for m in wl.layers):
            total += math.prod(la.out_shape)
    return total


def _q(x: float | int) -> Fraction:
    """A configuration number as the decimal it was written as."""
    return Fraction(x) if isinstance(x, int) else Fraction(repr(float(x)))


def reference_records(hw: Any, wl: Any) -> list[Record]:
    """The NCS2 plan's records for ``wl`` on ``hw``, computed the slow way."""
    c = hw["ncs2"]
    rows = _node_rows(wl) if wl.nodes else _v1_rows(wl)
    bpv = c["bytes_per_value"]
    ps_per_s = Fraction(10**12)
    cmx_capacity = _q(c["cmx_kib"]) * 1024
    used = 0
    layer_time: dict[str, int] = {la.name: 0 for la in wl.layers}
    layer_macs: dict[str, int] = {la.name: 0 for la in wl.layers}
    layer_bytes: dict[str, int] = {la.name: 0 for la in wl.layers}
    for r in rows:
        weight_bytes = r["weights"] * bpv
        used += weight_bytes
        from_cmx = weight_bytes == 0 or used <= cmx_capacity
        rate = _q(c["peak_gmacs_per_s"]) * 10**9 * _q(c[f"util_{r['type']}"])
        t_mac = math.ceil(r["macs"] * ps_per_s / rate)
        cmx_bytes = (r["in"] + r["out"]) * bpv + (weight_bytes if from_cmx else 0)
        t_cmx = math.ceil(cmx_bytes * ps_per_s / (_q(c["cmx_gbytes_per_s"]) * 10**9))
        t_dram = 0 if from_cmx else math.ceil(weight_bytes * ps_per_s / (_q(c["dram_gbytes_per_s"]) * 10**9))
        t = max(t_mac, t_cmx, t_dram) + math.ceil(_q(c["layer_overhead_us"]) * 10**6)
        layer_time[r["layer"]] += t
        layer_macs[r["layer"]] += r["macs"]
        layer_bytes[r["layer"]] += weight_bytes + (r["in"] + r["out"]) * bpv
    usb = _q(c["usb_mbytes_per_s"]) * 10**6
    in_bytes = math.prod(wl.input_shape) * c["input_bytes_per_value"]
    out_bytes = _outputs(wl) * bpv
    t_in, t_out = math.ceil(in_bytes * ps_per_s / usb), math.ceil(out_bytes * ps_per_s / usb)
    t_request = math.ceil(_q(c["request_overhead_us"]) * 10**6)
    total = t_request + t_in + t_out + sum(layer_time.values())
    p_active, p_idle = _q(c["p_active_mw"]), _q(c["p_idle_mw"])
    out: list[Record] = []
    for s in range(wl.samples):
        for la in wl.layers:
            t = layer_time[la.name]
            out.append(Record(s, la.name, None, "ncs2", "macs", float(layer_macs[la.name]), "count"))
            out.append(Record(s, la.name, None, "ncs2", "bytes", float(layer_bytes[la.name]), "byte"))
            out.append(Record(s, la.name, None, "ncs2", "time_ps", float(t), "ps"))
            out.append(Record(s, la.name, None, "ncs2", "energy.active",
                              float((p_active - p_idle) * t / 1000), "pJ"))
        bits = float(8 * (in_bytes + out_bytes))
        out.append(Record(s, "-", None, "ncs2", "payload_bits", bits, "bit"))
        out.append(Record(s, "-", None, "ncs2", "wire_bits", bits, "bit"))
        out.append(Record(s, "-", None, "ncs2", "usb_ps", float(t_in + t_out), "ps"))
        out.append(Record(s, "-", None, "ncs2", "request_ps", float(t_request), "ps"))
        out.append(Record(s, "-", None, "ncs2", "energy.static", float(p_idle * total / 1000), "pJ"))
    return out
