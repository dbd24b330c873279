"""The graph of trace format v2: current ops and neuron nodes, what value flows on each edge,
every shape, and which nodes are recorded.

Format v1 allowed only layers that read spikes. Format v2 follows NIR (`../ARCHITECTURE.md`,
Workload): *current ops* (convolutions, linear, bias, affine and scale (a trained batch norm is an
affine), pooling, add, and, or-not, flatten, reshape, a one-step delay for recurrence) compute
values, and *neuron nodes* turn currents into spikes. Every edge carries one kind of value:

- ``analog``: the sensor's input (a float in [0, 1] per pixel);
- ``spikes``: 0 or 1 per neuron and step;
- ``events``: small non-negative integers per neuron and step (the sum of spikes: a SEW-ResNet
  ADD, a sum pool of spikes): what a chip must carry as counts, not bits;
- ``current``: a real value per neuron and step (anything weighted, averaged or biased).

The kinds follow from the ops (:data:`KIND_RULES`): a weighted op gives a current; max-pooling
spikes gives spikes (their OR); adding spikes gives events; a neuron gives spikes. A node is
*recorded* in the trace when the processor sees its output as events: every neuron, the OR of a
max pool of spikes, an IAND, and a sum of spikes several layers read (a SEW ADD); a sum of spikes
one layer reads is part of that layer's fan-out (:func:`lower`).

A cycle is allowed only through a ``delay`` node (a recurrent edge: the delay reads a later node
and gives its previous step's value), so the graph stays a DAG once delays are cut. A recurrent
neuron (snnTorch's ``RLeaky``, ``RSynaptic``) is written ``neuron(inputs=[forward current,
recurrent current])`` with the recurrent current ``linear`` (all to all), ``conv2d`` or ``scale``
(one to one) of ``delay(neuron)``: the neuron adds the second input after the first, in the
framework's order (:class:`snnsim.neurons.SnnTorchRLeaky`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import WorkloadError, did_you_mean
from ..neurons import MODELS, is_spiking, neuron_model

WEIGHTED = {"conv1d": 1, "conv2d": 2, "conv3d": 3, "linear": 0}
POOLS = {"maxpool": None, "avgpool": None, "sumpool": None}  # spatial rank from the input
ELEMENTWISE = ("bias", "affine", "scale")
JOINS = ("add", "iand")
SHAPE_OPS = ("flatten", "reshape")
OPS = (*WEIGHTED, *ELEMENTWISE, *POOLS, *JOINS, *SHAPE_OPS, "delay", "neuron")
KINDS = ("analog", "spikes", "events", "current")
# neuron models that take a recurrent current as a second input, added after the forward one in
# the framework's order: the graph writes it neuron -> delay -> linear/conv/scale -> the neuron
RECURRENT_MODELS = ("snntorch.rleaky", "snntorch.rsynaptic")
# a conv2d on the analog input computed through a pixel's transfer curve (snnsim.hw.pixel_curve):
# the in-pixel layer of a P2M sensor as the trace's generator modelled it
PIXEL_CURVES = ("p2m_sci_rep_2022",)


@dataclass
class Node:
    """One node: an op, its inputs (node names or ``input``), its parameters, and, once the graph
    is checked, its output shape (channels first) and the kind of value it gives.

    Parameters by op: weighted ops ``out_channels`` / ``out_features``, ``kernel``, ``stride``,
    ``padding``, ``dilation``, ``groups``, ``bias`` (bool), ``weight_bits``; pools ``kernel``,
    ``stride``, ``padding``; ``reshape`` ``shape``; ``neuron`` ``model`` (a name of
    :mod:`snnsim.neurons`), its parameters, and ``output``: ``membrane`` for a readout of the
    membrane (LI and Integrator always are)."""

    name: str
    op: str
    inputs: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    out_shape: tuple[int, ...] = ()
    kind: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.out_shape)


PARAM_ARRAY = "array"  # a parameter stored as a trace array: {"array": "<name in the .npz>"}


def node_from_dict(d: Any, index: int) -> Node:
    """One manifest node ``{name, op, inputs, params}``, its types checked (the graph is checked by
    :func:`check_nodes`). A parameter is a JSON number, boolean, string, null, a list of integers
    (kernel, shape...), or ``{"array": NAME}`` naming a trace array (per-neuron values)."""
    key = f"nodes[{index}]"
    if not isinstance(d, dict):
        raise WorkloadError("a node must be a JSON object", key=key, expected="{name, op, inputs, params}",
                            found=type(d).__name__)
    unknown = set(d) - {"name", "op", "inputs", "params"}
    if unknown:
        raise WorkloadError("unknown field of a node", key=f"{key}.{sorted(unknown)[0]}",
                            expected="name, op, inputs, params", found=sorted(unknown)[0],
                            suggestion=did_you_mean(sorted(unknown)[0], ("name", "op", "inputs", "params")))
    name = d.get("name")
    if not isinstance(name, str):
        raise WorkloadError("a node needs a name", key=f"{key}.name", expected="a string", found=repr(name)[:200])
    key = f"nodes.{name}"
    op, inputs, params = d.get("op"), d.get("inputs"), d.get("params", {})
    if not isinstance(op, str):
        raise WorkloadError("a node needs an op", key=f"{key}.op", expected=f"one of {', '.join(OPS)}",
                            found=repr(op)[:200])
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise WorkloadError("inputs must be a non-empty list of node names", key=f"{key}.inputs",
                            expected="['input'] or ['<node>', ...]", found=repr(inputs)[:200])
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise WorkloadError("params must be a JSON object", key=f"{key}.params", expected="{...}",
                            found=type(params).__name__)
    for k, v in params.items():
        ok = (v is None or isinstance(v, (bool, str)) or isinstance(v, (int, float)) and math.isfinite(v)
              or isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
              or isinstance(v, dict) and set(v) == {PARAM_ARRAY} and isinstance(v[PARAM_ARRAY], str))
        if not ok:
            raise WorkloadError("invalid parameter", key=f"{key}.params.{k}",
                                expected="a finite number, boolean, string, null, list of integers, or "
                                '{"array": NAME}', found=repr(v)[:200])
    return Node(name=name, op=op, inputs=list(inputs), params=dict(params))


def node_as_dict(node: Node) -> dict[str, Any]:
    """The manifest form of a node (the inverse of :func:`node_from_dict`)."""
    return {"name": node.name, "op": node.op, "inputs": list(node.inputs), "params": dict(node.params)}


def _listed(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _err(node: Node, what: str, expected: str, found: str, suggestion: str | None = None,
         field_: str | None = None) -> WorkloadError:
    key = f"nodes.{node.name}" + (f".{field_}" if field_ else "")
    return WorkloadError(what, key=key, expected=expected, found=found, suggestion=suggestion)


def _axis_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def spatial_params(node: Node, rank: int) -> tuple[tuple[int, ...], ...]:
    """kernel, stride (default: the kernel for pools, 1 for convolutions), padding, dilation."""
    def ints(name: str, default: Any) -> tuple[int, ...]:
        v = node.params.get(name, default)
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v] * rank
        if not isinstance(v, (list, tuple)) or len(v) != rank or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise _err(node, f"{name} must give one integer per spatial axis", f"{rank} integers",
                       repr(v)[:200], field_=name)
        return tuple(v)

    kernel = ints("kernel", None)
    stride = ints("stride", kernel if node.op in POOLS else 1)
    padding = ints("padding", 0)
    dilation = ints("dilation", 1)
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0 or min(dilation) < 1:
        raise _err(node, "kernel, stride and dilation must be >= 1 and padding >= 0", "positive sizes",
                   f"kernel {list(kernel)}, stride {list(stride)}, padding {list(padding)}, "
                   f"dilation {list(dilation)}")
    return kernel, stride, padding, dilation


def output_shape(node: Node, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of ``node`` for its input shapes (raises WorkloadError)."""
    op = node.op
    if op in JOINS:
        if len(shapes) < 2 or (op == "iand" and len(shapes) != 2):
            raise _err(node, f"{op} needs {'two' if op == 'iand' else 'two or more'} inputs", "2 inputs"
                       if op == "iand" else ">= 2 inputs", f"{len(shapes)}", field_="inputs")
        for s in shapes[1:]:
            if s != shapes[0]:
                raise _err(node, f"the inputs of {op} have different shapes", str(list(shapes[0])),
                           str(list(s)), "reshape one branch, or pool it to the other's size")
        return shapes[0]
    if op == "neuron" and len(shapes) == 2 and node.params.get("model") in RECURRENT_MODELS:
        if shapes[1] != shapes[0]:
            raise _err(node, "a recurrent neuron's two inputs have different shapes", str(list(shapes[0])),
                       str(list(shapes[1])), field_="inputs")
        return shapes[0]
    if len(shapes) != 1:
        hint = (f"only {', '.join(RECURRENT_MODELS)} take a second (recurrent) input" if op == "neuron" else None)
        raise _err(node, f"{op} takes exactly one input", "1 input", f"{len(shapes)} inputs", hint, field_="inputs")
    (first,) = shapes
    if op in ("flatten", "neuron", *ELEMENTWISE):
        return (math.prod(first),) if op == "flatten" else first
    if op == "reshape":
        want = node.params.get("shape")
        if not isinstance(want, (list, tuple)) or not want or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in want):
            raise _err(node, "reshape needs a shape of positive integers", "[int, ...]", repr(want)[:200],
                       field_="shape")
        if math.prod(want) != math.prod(first):
            raise _err(node, "reshape changes the number of values", f"{math.prod(first)} values",
                       f"{math.prod(want)} in {list(want)}", field_="shape")
        return tuple(want)
    if op == "linear":
        if len(first) != 1:
            raise _err(node, "linear needs a flat input", "[features]", str(list(first)),
                       "put a flatten before it", field_="inputs")
        n = node.params.get("out_features")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _err(node, "linear needs out_features", "a positive integer", repr(n), field_="out_features")
        return (n,)
    rank = WEIGHTED.get(op) or len(first) - 1
    if len(first) != rank + 1 or rank < 1:
        raise _err(node, f"{op} needs a channels-first input with {rank} spatial axes",
                   f"{rank + 1} dimensions", str(list(first)), field_="inputs")
    kernel, stride, padding, dilation = spatial_params(node, rank)
    spatial = tuple(_axis_out(first[1 + i], kernel[i], stride[i], padding[i], dilation[i]) for i in range(rank))
    if min(spatial) < 1:
        raise _err(node, "the kernel is larger than its (padded) input", "an output of at least 1",
                   f"output {list(spatial)} from input {list(first)}")
    if op in POOLS:
        return (first[0], *spatial)
    c_out, groups = node.params.get("out_channels"), node.params.get("groups", 1)
    if not isinstance(c_out, int) or isinstance(c_out, bool) or c_out < 1:
        raise _err(node, f"{op} needs out_channels", "a positive integer", repr(c_out), field_="out_channels")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or first[0] % groups or c_out % groups:
        raise _err(node, "groups must divide the input and output channels", f"a divisor of {first[0]} and {c_out}",
                   repr(groups), field_="groups")
    return (c_out, *spatial)


def value_kind(node: Node, kinds: list[str]) -> str:
    """:data:`KIND_RULES`: the kind of value an op gives for the kinds it reads."""
    op = node.op
    discrete = all(k in ("spikes", "events") for k in kinds)
    if op == "neuron":
        return "current" if reads_membrane(node) else "spikes"
    if op in WEIGHTED or op in ELEMENTWISE or op == "avgpool":
        return "current"
    if op in ("flatten", "reshape"):
        return kinds[0]
    if op == "maxpool":
        return kinds[0] if discrete else "current"  # the max of spikes is their OR
    if op in ("sumpool", "add"):
        return "events" if discrete else "current"  # integer sums of spikes are events
    if op == "iand":
        if kinds != ["spikes", "spikes"]:
            raise _err(node, "iand (NOT a AND b) reads two spike maps", "spikes, spikes", ", ".join(kinds),
                       field_="inputs")
        return "spikes"
    raise _err(node, "unsupported op", f"one of {', '.join(OPS)}", repr(op), did_you_mean(str(op), OPS), "op")


KIND_RULES = {
    "conv1d/conv2d/conv3d/linear, bias/affine/scale, avgpool": "current",
    "maxpool": "its input's kind if spikes or events (OR, max), else current",
    "sumpool, add": "events if every input is spikes or events, else current",
    "iand": "spikes (reads two spike maps)",
    "flatten, reshape": "its input's kind",
    "delay": "the kind it declares, which must be its input's",
    "neuron": "spikes",
}


def check_nodes(nodes: list[Node], input_shape: tuple[int, ...]) -> None:
    """Check names, edges, cycles (only through ``delay``), neuron models and their parameters,
    shapes and kinds; fill in ``out_shape`` and ``kind`` of every node. Parameters stored as
    arrays (``{"array": NAME}``) must be resolved to those arrays first. Nodes may be listed in any order: the check visits
    them in dependency order (a delay's input counts as already known)."""
    by_name: dict[str, Node] = {}
    for n in nodes:
        if not isinstance(n.name, str) or not n.name or n.name == "input" or "/" in n.name:
            raise WorkloadError("invalid node name", key=f"nodes.{n.name}", expected="a non-empty string "
                                "without '/', not 'input'", found=repr(n.name))
        if n.name in by_name:
            raise WorkloadError("duplicate node name", key=f"nodes.{n.name}", expected="unique names", found=n.name)
        if n.op not in OPS:
            raise _err(n, "unsupported op", f"one of {', '.join(OPS)}", repr(n.op), did_you_mean(str(n.op), OPS), "op")
        by_name[n.name] = n
    for n in nodes:
        curve = n.params.get("pixel_curve")
        if curve is not None and (n.op != "conv2d" or curve not in PIXEL_CURVES or n.inputs != ["input"]
                                  or n.params.get("groups", 1) != 1 or any(_listed(n.params.get("padding", 0)))):
            raise _err(n, "a pixel transfer curve applies to an unpadded, ungrouped conv2d of the analog input",
                       f"pixel_curve one of {', '.join(PIXEL_CURVES)} on such a conv2d", f"{n.op} {curve!r}",
                       field_="pixel_curve")
        if n.op == "neuron":
            params = {k: v for k, v in n.params.items() if k not in ("model", "output")}
            neuron_model(n.params.get("model"), params, key=f"nodes.{n.name}")
            out = n.params.get("output")
            if out not in (None, "spikes", "membrane") or out == "spikes" and not is_spiking(MODELS[n.params["model"]]):
                raise _err(n, "a neuron's output is its spikes or its membrane (a readout)",
                           "'membrane'" if out == "spikes" else "'spikes' or 'membrane'", repr(out),
                           field_="params.output")
        for src in n.inputs:
            if src != "input" and src not in by_name:
                raise _err(n, "an input names no node", "'input' or a node name", src,
                           did_you_mean(src, list(by_name)), "inputs")
    shape: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
    kind: dict[str, str] = {"input": "analog"}
    pending = {n.name: n for n in nodes}
    # a delay declares its shape and kind (it may read a node that depends on it: a recurrent
    # edge), checked against its source at the end; any other cycle never resolves
    delays = [n for n in nodes if n.op == "delay"]
    for n in delays:
        want, k = n.params.get("shape"), n.params.get("kind", "spikes")
        if len(n.inputs) != 1:
            raise _err(n, "delay takes exactly one input", "1 input", f"{len(n.inputs)} inputs", field_="inputs")
        if not isinstance(want, (list, tuple)) or not want or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in want):
            raise _err(n, "a delay declares the shape it carries", "[int, ...]", repr(want)[:200], field_="shape")
        if k not in KINDS or k == "analog":
            raise _err(n, "a delay declares the kind of value it carries", "spikes, events or current", repr(k),
                       field_="kind")
        n.out_shape, n.kind = tuple(want), k
        shape[n.name], kind[n.name] = n.out_shape, n.kind
        del pending[n.name]
    while pending:
        progressed = False
        for name, n in list(pending.items()):
            if not all(s in shape for s in n.inputs):
                continue
            n.out_shape = output_shape(n, [shape[s] for s in n.inputs])
            n.kind = value_kind(n, [kind[s] for s in n.inputs])
            shape[name], kind[name] = n.out_shape, n.kind
            del pending[name]
            progressed = True
        if not progressed:
            stuck = sorted(pending)
            raise WorkloadError("the graph has a cycle that no delay breaks, or a delay that feeds itself",
                                key=f"nodes.{stuck[0]}", expected="every cycle through a delay node "
                                "(a recurrent edge reads the previous step)", found=f"nodes {stuck[:6]}",
                                suggestion="model recurrence as neuron -> delay -> the op that adds it")
    for n in delays:
        (src,) = n.inputs
        if (shape[src], kind[src]) != (n.out_shape, n.kind):
            raise _err(n, "a delay's declared shape or kind differs from its input's",
                       f"{list(shape[src])} {kind[src]} (from {src})", f"{list(n.out_shape)} {n.kind}")


def reads_membrane(node: Node) -> bool:
    """A neuron read out by its membrane (``params.output: membrane``, or a model with no spikes:
    LI, Integrator): the network's result, a current."""
    model = MODELS.get(node.params.get("model"))
    return node.params.get("output") == "membrane" or model is not None and not is_spiking(model)


def recorded(nodes: list[Node]) -> list[Node]:
    """The nodes whose outputs a trace records: the outputs of the hardware layers
    (:func:`lower`) that give spikes or events, in dependency order."""
    return [la.output for la in lower(nodes) if la.output.kind in ("spikes", "events")]


@dataclass
class HardwareLayer:
    """What one processing step of a chip computes: a recorded node (a neuron, or an op on events)
    or a readout (a current nobody reads), together with every current op that feeds it from
    recorded sources, the analog input or delays. ``conv -> batch norm -> max pool -> LIF`` is one
    layer: the pooling acts on currents, before the neuron."""

    name: str
    output: Node
    ops: list[Node]  # the current (and analog) ops of the layer, in dependency order, output last
    sources: list[str]  # what the layer reads: recorded nodes, 'input', or delays

    @property
    def readout(self) -> bool:
        """A current read out as the network's result (no neuron: membranes or currents)."""
        return self.output.kind == "current"


def lower(nodes: list[Node]) -> list[HardwareLayer]:
    """Group a checked graph (:func:`check_nodes`) into hardware layers, in dependency order.

    A layer ends at a node the processor must see as events: a neuron; an op on spikes that is
    not a sum (the OR of a max pool of spikes, an IAND); a sum of spikes or events (a SEW-ResNet
    ADD, a sum pool, a flatten of spikes) that several layers read; or a node nobody reads (the
    network's output: a readout when it is a current). Every other node belongs to the one layer
    its value flows into: a sum of spikes read by one layer is part of that layer's fan-out, as a
    convolution is. A current that two layers read (one conv feeding two neurons) is refused: a
    chip would compute it once and store it, which the format does not model."""
    by_name = {n.name: n for n in nodes}
    consumers: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for src in n.inputs:
            if src != "input" and n.op != "delay":
                consumers[src].append(n.name)
    read_late = {n.inputs[0] for n in nodes if n.op == "delay"}  # read again one step later
    for n in nodes:
        if n.op == "neuron" and n.kind == "current" and (consumers[n.name] or n.name in read_late):
            raise WorkloadError("a neuron read out by its membrane feeds other nodes", key=f"nodes.{n.name}",
                                expected="a membrane readout as a network output",
                                found=f"read by {sorted(consumers[n.name]) or 'a delay'}",
                                suggestion="read its spikes instead (drop params.output), or end the network there")
    heads = {n.name for n in nodes if n.op != "delay" and (
        n.op == "neuron" or not consumers[n.name] or n.name in read_late
        or n.kind in ("spikes", "events") and n.op in ("maxpool", "iand"))}
    order = dependency_order(nodes)
    owner: dict[str, str] = {}
    for name in reversed(order):
        n = by_name[name]
        if n.op == "delay":
            continue
        if name not in heads:
            owners = {owner[c] for c in consumers[name]}
            if len(owners) == 1:
                owner[name] = owners.pop()
                continue
            if n.kind not in ("spikes", "events"):
                raise WorkloadError("a current op feeds more than one layer", key=f"nodes.{name}",
                                    expected="each current flowing into one neuron or readout",
                                    found=f"'{name}' feeds {sorted(owners)}",
                                    suggestion="give each branch its own op, or put a neuron after it")
            heads.add(name)  # events several layers read are recorded once
        owner[name] = name
    layers = []
    for name in order:
        if name not in heads:
            continue
        ops = [by_name[m] for m in order if owner.get(m) == name]
        mine = {n.name for n in ops}
        sources: list[str] = []
        for n in ops:
            for src in n.inputs:
                if src not in mine and src not in sources:
                    sources.append(src)
        layers.append(HardwareLayer(name=name, output=by_name[name], ops=ops, sources=sources))
    return layers


def dependency_order(nodes: list[Node]) -> list[str]:
    """Node names with every node after its inputs (delays' inputs do not count: they are read
    one step late); stable for nodes already in order."""
    done: set[str] = {"input"}
    order: list[str] = []
    pending = list(nodes)
    while pending:
        rest = []
        for n in pending:
            if n.op == "delay" or all(s in done for s in n.inputs):
                done.add(n.name)
                order.append(n.name)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # pragma: no cover - check_nodes refuses such graphs first
            raise WorkloadError("the graph has a cycle that no delay breaks", key=f"nodes.{rest[0].name}",
                                expected="a graph checked by check_nodes", found=f"{len(rest)} nodes in a cycle")
        pending = rest
    return order
