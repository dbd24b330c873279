"""MIPI CSI-2 over D-PHY: packets, bits on the wire, and burst timing.

Packets (CSI-2): a long packet is a 4-byte header (data ID, 16-bit word count, ECC), WC payload
bytes and a 2-byte checksum footer; frame start / frame end are 4-byte short packets. One long
packet per line: a RAW line of a conventional sensor, or one spike row of one time step from a
P2M sensor (a user-defined data type, 0x30-0x37; the step rides in the data type and virtual
channel, or in a 2-byte payload prefix when T exceeds 8 * 2^vc_bits, counted as payload).

Payload encodings for spike rows: ``bitmap`` (1 bit per neuron of the row: W_o * C_o bits) and
``aer`` (one address of ceil(log2(W_o * C_o)) bits per spike, the row and step implied by the
packet). Lines are padded to whole bytes.

Timing (D-PHY, sensor-link-pim.md A.4-A.6): bytes are dealt round-robin over the lanes, so a
burst carries ceil(bytes / lanes) * 8 UI per lane, UI = 1 / bit rate. Each burst pays the
LP->HS entry (T_LPX + T_HS-PREPARE + T_HS-ZERO >= 145 ns + 10 UI), the 8-UI sync byte, the trail
(max(8 UI, 60 ns + 4 UI)) and T_HS-EXIT; with a non-continuous clock the clock lane's own
overhead is added. Line blanking follows every line, frame blanking every frame end.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import MappingError
from ..units import ceil_ps, exact
from .sensor import SensorPlan, ps
from .spikes import form_work

HEADER_BYTES = 4
FOOTER_BYTES = 2
SHORT_PACKET_BYTES = 4
USER_DATA_TYPES = 8


@dataclass
class LinkPlan:
    """Per-packet payload and wire sizes and the link's service time for each sensor packet.

    Arrays are (samples, packets per frame), in send order.
    """

    encoding: str
    payload_bits: np.ndarray
    wc_bytes: np.ndarray
    wire_bytes: np.ndarray  # long packet + the frame's FS/FE where they ride with it
    service_ps: np.ndarray
    burst_ps: np.ndarray  # time in HS bursts only
    bursts: np.ndarray
    step: np.ndarray  # (packets,) time step carried by each packet (0 for raw frames)
    bits_per_event: int
    conventional_bits_per_frame: int
    ui_ps: float


def _ui_ps(cfg: dict) -> Fraction:
    return Fraction(1000) / exact(cfg["gbps_per_lane"])


def burst_overhead_ps(cfg: dict) -> Fraction:
    """Fixed cost of one HS burst on a data lane, in exact ps (LP->HS entry, sync, trail, exit)."""
    return _burst_overhead_ps(cfg["gbps_per_lane"], cfg["t_lpx_ns"], cfg["t_hs_prepare_zero_ns"],
                              cfg["t_hs_trail_ns"], cfg["t_hs_exit_ns"],
                              None if cfg["continuous_clock"] else cfg["t_clk_overhead_ns"])


@functools.lru_cache(maxsize=256)
def _burst_overhead_ps(gbps_per_lane, t_lpx_ns, t_hs_prepare_zero_ns, t_hs_trail_ns, t_hs_exit_ns,
                       t_clk_overhead_ns) -> Fraction:
    ui = Fraction(1000) / exact(gbps_per_lane)
    over = (exact(t_lpx_ns) * 1000 + exact(t_hs_prepare_zero_ns) * 1000 + 10 * ui + 8 * ui
            + max(8 * ui, exact(t_hs_trail_ns) * 1000 + 4 * ui) + exact(t_hs_exit_ns) * 1000)
    if t_clk_overhead_ns is not None:  # a non-continuous clock lane starts and stops with each burst
        over += exact(t_clk_overhead_ns) * 1000
    return over


def burst_ps(nbytes: np.ndarray | int, cfg: dict) -> np.ndarray:
    """Duration of bursts carrying ``nbytes`` each, in integer ps (the exact time rounded up)."""
    ui = _ui_ps(cfg)
    over = burst_overhead_ps(cfg)
    arr = np.asarray(nbytes, dtype=np.int64)
    uniq, inv = np.unique(arr, return_inverse=True)
    times = np.array([ceil_ps(over + (-(-int(b) // cfg["lanes"])) * 8 * ui) for b in uniq], np.int64)
    return times[inv].reshape(arr.shape)


def step_tag_bytes(steps: int, cfg: dict) -> int:
    """Extra payload bytes needed to name the time step when the data ID cannot."""
    return 0 if steps <= USER_DATA_TYPES << cfg["virtual_channel_bits"] else 2


def _word_count_error(hw, nbytes: int, what: str) -> MappingError:
    return MappingError("a line exceeds the 16-bit CSI-2 word count", file=hw.source, key="link",
                        expected="at most 65535 payload bytes per packet", found=f"{nbytes} bytes ({what})",
                        suggestion="a narrower image or fewer in-pixel channels" if what != "aer" else
                        "--set link.encoding=bitmap")


def link_problems(hw, wl) -> list[MappingError]:
    """Lines longer than a CSI-2 packet can carry, known from the shapes alone: a RAW line, or a
    bitmap spike row (an AER row's length depends on its spikes: :func:`link_plan` checks it)."""
    cfg, scfg = hw["link"], hw["sensor"]
    if len(wl.input_shape) != 3:
        return []
    if scfg["kind"] == "conventional":
        q = math.isqrt(scfg["photodiodes_per_pixel"])
        nbytes = (wl.input_shape[2] * q * cfg["raw_bits"] + 7) // 8
        what = "raw"
    elif cfg["encoding"] == "bitmap" and len(wl.layers[0].out_shape) == 3:
        c_o, _h_o, w_o = wl.layers[0].out_shape
        nbytes = (w_o * c_o + 7) // 8 + step_tag_bytes(wl.time_steps, cfg)
        what = "bitmap"
    else:
        return []
    return [_word_count_error(hw, nbytes, what)] if nbytes > 65535 else []


def link_plan(hw, wl, sensor: SensorPlan) -> LinkPlan:
    """Packetise every frame the sensor sends and time each packet on the link."""
    cfg = hw["link"]
    scfg = hw["sensor"]
    samples = wl.samples
    n_pk = sensor.rows * sensor.packets_per_row
    q = int(round(math.sqrt(scfg["photodiodes_per_pixel"])))
    conv_bits = wl.input_shape[1] * wl.input_shape[2] * q * q * cfg["raw_bits"]
    if sensor.kind == "conventional":
        cols = int(sensor.details["photodiode_cols"])
        bits = np.full((samples, n_pk), cols * cfg["raw_bits"], np.int64)
        encoding, bpe, tag = "raw", 0, 0
    else:
        layer = wl.layer(sensor.layer)
        c_o, h_o, w_o = layer.out_shape
        encoding = cfg["encoding"]
        tag = step_tag_bytes(wl.time_steps, cfg)
        row_neurons = w_o * c_o
        if encoding == "bitmap":
            bpe = 0
            bits = np.full((samples, n_pk), row_neurons, np.int64)
        elif encoding == "aer":
            bpe = max(1, math.ceil(math.log2(row_neurons)))
            spikes, _ = form_work(wl.spike_form(layer.name), np.zeros(h_o * w_o, np.int64), w_o, h_o)
            # packet order: for each row, its T steps
            per = spikes.transpose(0, 2, 1).reshape(samples, n_pk)
            bits = per * bpe
        else:  # pragma: no cover - the schema only admits the encodings above
            raise MappingError("unknown link encoding", key="link.encoding", expected="bitmap or aer",
                               found=encoding)
    wc = (bits + 7) // 8 + tag
    bits = bits + 8 * tag  # the payload carries the step prefix too
    if np.any(wc > 65535):
        raise _word_count_error(hw, int(wc.max()), encoding)
    long_bytes = wc + HEADER_BYTES + FOOTER_BYTES
    b_long = burst_ps(long_bytes, cfg)
    b_short = int(burst_ps(SHORT_PACKET_BYTES, cfg))
    service = b_long + ps(cfg["line_blanking_ns"])
    hs = b_long.copy()
    bursts = np.ones((samples, n_pk), np.int64)
    wire = long_bytes.copy()
    # frame start rides with the first packet, frame end (and vertical blanking) with the last
    service[:, 0] += b_short
    service[:, -1] += b_short + ps(cfg["frame_blanking_ns"])
    hs[:, 0] += b_short
    hs[:, -1] += b_short
    bursts[:, 0] += 1
    bursts[:, -1] += 1
    wire[:, 0] += SHORT_PACKET_BYTES
    wire[:, -1] += SHORT_PACKET_BYTES
    return LinkPlan(encoding=encoding, payload_bits=bits, wc_bytes=wc, wire_bytes=wire, service_ps=service,
                    burst_ps=hs, bursts=bursts, step=sensor.packet_step.copy(), bits_per_event=bpe,
                    conventional_bits_per_frame=conv_bits, ui_ps=float(_ui_ps(cfg)))


def raw_frame_wire_bits(hw, wl) -> int:
    """Bits on the wire for a conventional RAW readout of the workload's frame (the reference
    against which bandwidth reduction is reported at wire level)."""
    cfg = hw["link"]
    q = int(round(math.sqrt(hw["sensor"]["photodiodes_per_pixel"])))
    rows, cols = wl.input_shape[1] * q, wl.input_shape[2] * q
    wc = (cols * cfg["raw_bits"] + 7) // 8
    return 8 * (rows * (wc + HEADER_BYTES + FOOTER_BYTES) + 2 * SHORT_PACKET_BYTES)
