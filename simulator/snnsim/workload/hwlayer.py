"""What a chip computes for one format v2 hardware layer: its synapses, its dense current passes
and its neuron, as the hardware models (:mod:`snnsim.hw.core`, :mod:`snnsim.hw.memory`, the
reference models, the operation counts) charge them.

A v2 hardware layer (:func:`snnsim.workload.nodes.lower`) is a neuron (or an OR of spikes, an
IAND, events several layers read, a readout) with the current ops that feed it. The chip runs it
in three parts:

1. **Synapses**, event by event. Every recorded spike (or non-zero event) of a source is
   delivered through the *linear* ops between it and an accumulator: structural ops on spikes
   (``add``, ``sumpool``, ``avgpool``, ``flatten``, ``reshape``; they are linear, so a spike
   delivered through them is the same as their result delivered once) and then at most one
   weighted op (``conv1d/2d/3d``, ``linear``). One (spike, reached position) pair is one vector
   operation, as for format v1's layers. A SEW-ResNet ADD read by one layer is therefore part of
   that layer's fan-out and is never stored.
2. **Dense current passes**, once per step over every value: the bias of a conv or linear (added
   into the value it accumulates), ``bias``, ``affine``, ``scale``,
   pooling of currents (``maxpool``/``avgpool``/``sumpool`` of currents accumulated at pre-pool
   resolution), ``add`` of currents (the residual of a Spiking-ResNet), ``flatten``/``reshape``
   of currents. Each pass reads its inputs from the accumulators and writes its output; the pass
   feeding the neuron adds its result into the membrane. For a layer reading the analog input
   (direct encoding) the currents do not change over the steps, so these passes run once.
3. **The neuron**, once per step over every output neuron, with one or two state values per
   neuron (a CubaLIF / snnTorch ``Synaptic`` neuron keeps a synaptic current beside its membrane).
   A neuron fed only by synapses accumulates them straight into its membrane (format v1's rule).

Events (integer counts, a sum of spikes several layers read) are stored ``event_bits`` wide, the
width of the largest count the graph allows; a synapse reading them multiplies each weight by the
count (a MAC per update instead of an accumulate).

What a chip cannot run this way (a weighted op on a current computed in the same layer, a
non-linear op between spikes and a weighted op, a layer of more than :data:`MAX_SYNAPSES`
delivery paths) is refused with a message naming the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import WorkloadError
from .nodes import WEIGHTED, HardwareLayer, Node

LINEAR_ON_SPIKES = ("add", "sumpool", "avgpool", "flatten", "reshape")
TWO_STATE_MODELS = ("snntorch.synaptic", "snntorch.rsynaptic", "nir.cubalif")
MAX_SYNAPSES = 64


@dataclass(frozen=True)
class Synapse:
    """One delivery path of a source's events into an accumulator of the layer."""

    source: str  # the recorded node (a layer's output) or 'input' whose values it reads
    value: str  # 'spikes', 'events' or 'analog'
    delayed: bool  # through a delay: delivers the previous step's values (a recurrent edge)
    chain: tuple[Node, ...]  # the linear ops it passes through, in order (a weighted op last, if any)
    target: str  # the node whose accumulator (or the neuron's membrane) it updates
    into_membrane: bool  # the accumulator is the neuron's membrane

    @property
    def weighted(self) -> Node | None:
        return self.chain[-1] if self.chain and self.chain[-1].op in WEIGHTED else None


@dataclass(frozen=True)
class Parts:
    """The synapses, dense passes and neuron of one hardware layer."""

    synapses: tuple[Synapse, ...]
    passes: tuple[Node, ...]  # dense current ops, in dependency order
    pass_reads: tuple[int, ...]  # values each pass reads per step
    feeds_membrane: str | None  # the pass whose result is added into the membrane
    neuron: Node | None
    output: Node
    states: int  # state values per neuron (0 without a neuron)
    accumulator_values: int  # values held in accumulators other than the membranes
    out_bits: int  # bits per output value in a stored map: 1 (spikes), the event width, 0 (a current)
    encoding: bool  # reads the analog input (its currents from the frame are computed once for all steps)
    weighted_in: tuple[tuple[Node, tuple[int, ...]], ...] = ()  # each weighted op and its input shape

    @property
    def bias_adds(self) -> tuple[Node, ...]:
        """Weighted ops with their own bias: one add per output value and step, into the value
        they accumulate (a dense pass)."""
        return tuple(n for n in self.weighted if n.params.get("bias"))

    @property
    def weighted(self) -> tuple[Node, ...]:
        return tuple(n for n, _shape in self.weighted_in)

    @property
    def constant_currents(self) -> bool:
        """Every current of the layer comes from the frame (direct encoding): the same at every
        step, so the dense passes run once."""
        return self.encoding and all(s.value == "analog" for s in self.synapses)

    @property
    def frame_synapse(self) -> Synapse:
        """The synapse from the analog frame of an encoding layer."""
        (sy,) = [s for s in self.synapses if s.value == "analog"]
        return sy

    @property
    def spiking_neuron(self) -> bool:
        return self.neuron is not None and self.output.kind == "spikes"

    @property
    def or_of_spikes(self) -> bool:
        """An output computed from spikes without membranes: a max pool of spikes (OR), an IAND."""
        return self.neuron is None and self.output.op in ("maxpool", "iand")


def event_bound(node: Node, by_name: dict[str, Node], bounds: dict[str, int]) -> int:
    """The largest value a spike or event node can take (1 for spikes)."""
    if node.name in bounds:
        return bounds[node.name]
    if node.kind == "spikes":
        b = 1
    elif node.op == "add":
        b = sum(event_bound(by_name[s], by_name, bounds) for s in node.inputs)
    elif node.op == "sumpool":
        b = math.prod(_ints(node.params.get("kernel"), len(node.out_shape) - 1)) * event_bound(
            by_name[node.inputs[0]], by_name, bounds)
    elif node.op in ("flatten", "reshape", "maxpool", "delay"):
        b = event_bound(by_name[node.inputs[0]], by_name, bounds)
    else:  # pragma: no cover - check_nodes gives events only through the ops above
        raise AssertionError(f"{node.name} ({node.op}) gives no events")
    bounds[node.name] = b
    return b


def _ints(v, rank: int) -> tuple[int, ...]:
    return tuple([v] * rank) if isinstance(v, int) else tuple(v)


def _fail(node: Node, what: str, found: str, suggestion: str) -> WorkloadError:
    return WorkloadError(what, key=f"nodes.{node.name}", expected="spikes delivered through linear ops (add, "
                         "sum/avg pool, flatten, reshape) and at most one conv or linear, then current ops and a "
                         "neuron", found=found, suggestion=suggestion)


def build_parts(hl: HardwareLayer, by_name: dict[str, Node], bounds: dict[str, int],
                input_shape: tuple[int, ...]) -> Parts:
    """The :class:`Parts` of one hardware layer (``by_name``: every checked node of the graph)."""
    mine = {n.name: n for n in hl.ops}
    out = hl.output
    neuron = out if out.op == "neuron" else None

    def source_of(name: str) -> tuple[str, str, bool]:
        """(recorded source, value kind, delayed) of a name outside the layer."""
        if name == "input":
            return "input", "analog", False
        n = by_name[name]
        if n.op == "delay":
            return n.inputs[0], by_name[n.inputs[0]].kind, True
        return name, n.kind, False

    # front: linear ops whose every input is a source or another front op (the output of an
    # events/OR layer is its own front op)
    front: set[str] = set()
    for n in hl.ops:
        if n is neuron:
            continue
        ins_ok = all(s not in mine or s in front for s in n.inputs)
        analog = any(source_of(s)[1] == "analog" for s in n.inputs if s not in mine)
        linear = n.op in LINEAR_ON_SPIKES and not (analog and n.op not in ("flatten", "reshape"))
        if ins_ok and (linear or n.op in ("maxpool", "iand") and n is out):
            front.add(n.name)
    synaptic = {n.name for n in hl.ops if n.op in WEIGHTED and all(s not in mine or s in front for s in n.inputs)}
    passes = [n for n in hl.ops if n is not neuron and n.name not in front and n.name not in synaptic]
    for n in passes:
        if n.op in WEIGHTED:
            raise _fail(n, "a weighted op reads a current computed in the same layer", f"{n.op} of "
                        f"{n.inputs[0]}", "put a neuron between the two, or fold the ops into one weighted op")
        if n.op == "iand" or n.op == "maxpool" and n.kind != "current":  # pragma: no cover - lower() makes them heads
            raise _fail(n, "an op on spikes inside a layer", n.op, "record it")

    synapses: list[Synapse] = []

    def walk(name: str, chain: tuple[Node, ...], src: tuple[str, str, bool]) -> None:
        for c in consumers.get(name, ()):
            node = mine[c]
            if c in front:
                if node is out:  # the events/OR output accumulates what reaches it
                    synapses.append(Synapse(src[0], src[1], src[2], (*chain, node), c, False))
                else:
                    walk(c, (*chain, node), src)
            elif c in synaptic:
                synapses.append(Synapse(src[0], src[1], src[2], (*chain, node), c, _direct(c)))
            else:  # a dense pass or the neuron reads it: an accumulator of that input
                synapses.append(Synapse(src[0], src[1], src[2], chain, c, c == (neuron.name if neuron else None)))
            if len(synapses) > MAX_SYNAPSES:
                raise _fail(node, "a layer with too many delivery paths", f"more than {MAX_SYNAPSES}",
                            "record an intermediate sum of spikes (give it a second reader) or simplify the graph")

    def _direct(name: str) -> bool:
        return neuron is not None and consumers.get(name) == [neuron.name]

    consumers: dict[str, list[str]] = {}
    for n in hl.ops:
        for s in n.inputs:
            consumers.setdefault(s, []).append(n.name)
    for s in hl.sources:
        walk(s, (), source_of(s))
    analog = [sy for sy in synapses if sy.value == "analog"]
    for sy in analog:  # a neuron straight on the frame is a rate code; anything else needs a weighted op
        if sy.weighted is None and (sy.chain or not sy.into_membrane):
            raise _fail(by_name[sy.target] if sy.target in by_name else out, "the analog input reaches a layer "
                        "without a weighted op", " -> ".join(["input", *(n.op for n in sy.chain), sy.target]),
                        "start the network with a conv or linear, or put a neuron on the frame (a rate code)")
    acc = 0
    for sy in synapses:
        if sy.into_membrane or sy.target == out.name and out.op in ("maxpool", "iand"):
            continue
        if sy.weighted is not None:
            acc += sy.weighted.size
        elif sy.target == out.name:
            acc += out.size
        else:
            acc += (sy.chain[-1].size if sy.chain else by_name[sy.source].size)
    # distinct weighted accumulators are counted once (several sources into one conv share it)
    seen: set[str] = set()
    for sy in synapses:
        w = sy.weighted
        if w is not None and not sy.into_membrane:
            if w.name in seen:
                acc -= w.size
            seen.add(w.name)
    reads = tuple(sum(by_name[s].size if s in by_name else 0 for s in n.inputs) for n in passes)
    feeds = None
    if neuron is not None:
        feeding = [n.name for n in passes if n.name in neuron.inputs]
        feeds = feeding[-1] if feeding else None
    if out.kind == "spikes":
        out_bits = 1
    elif out.kind == "events":
        out_bits = max(1, math.ceil(math.log2(event_bound(out, by_name, bounds) + 1)))
    else:
        out_bits = 0
    states = 0
    if neuron is not None:
        states = 2 if neuron.params.get("model") in TWO_STATE_MODELS else 1
    weighted_in: dict[str, tuple[Node, tuple[int, ...]]] = {}
    for sy in synapses:
        w = sy.weighted
        if w is not None and w.name not in weighted_in:
            src = w.inputs[0]
            weighted_in[w.name] = (w, tuple(input_shape) if src == "input" else tuple(by_name[src].out_shape))
    return Parts(synapses=tuple(synapses), passes=tuple(passes), pass_reads=reads, feeds_membrane=feeds,
                 neuron=neuron, output=out, states=states, accumulator_values=acc, out_bits=out_bits,
                 encoding=bool(analog), weighted_in=tuple(weighted_in.values()))


def parts_layers(hw_layers: list[HardwareLayer], nodes: list[Node], input_shape: tuple[int, ...]) -> list:
    """The :class:`~snnsim.workload.graph.Layer` list the hardware models replay for a v2 graph:
    one layer per hardware layer, its :class:`Parts` attached (``op`` is ``graph``; the geometry
    fields describe its weighted op when it has exactly one, as the P2M sensor reads them)."""
    from .graph import Layer

    by_name = {n.name: n for n in nodes}
    bounds: dict[str, int] = {}
    out = []
    for hl in hw_layers:
        parts = build_parts(hl, by_name, bounds, input_shape)
        inputs: list[str] = []
        for sy in parts.synapses:
            if sy.source not in inputs:
                inputs.append(sy.source)
        geometry: dict = {}
        weighted = parts.weighted
        if len(weighted) == 1:
            w, w_in = parts.weighted_in[0]
            rank = WEIGHTED[w.op]
            geometry["weight_bits"] = int(w.params.get("weight_bits", 1) or 1)
            if rank:
                geometry.update(kernel=_ints(w.params["kernel"], rank), stride=_ints(w.params.get("stride", 1), rank),
                                padding=_ints(w.params.get("padding", 0), rank), groups=int(w.params.get("groups", 1)))
            geometry["in_shape"] = w_in
        elif weighted:
            geometry["weight_bits"] = max(int(w.params.get("weight_bits", 1) or 1) for w in weighted)
        layer = Layer(hl.name, "graph", inputs, tuple(parts.output.out_shape),
                      spiking=parts.output.kind in ("spikes", "events"), **geometry)
        layer.parts = parts
        out.append(layer)
    return out
