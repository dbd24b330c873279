"""Chips as components: simulation.py composes whatever chain hw/chain.py gives it, so a new
component plugs in without an edit of the orchestration, and names no component itself."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from snnsim import load_hardware, load_workload, simulate
from snnsim.hw import chain
from snnsim.report.report import Record

ROOT = Path(__file__).resolve().parents[1]


class Retimer:
    """A stand-in unit between the link and the core: it takes each packet, holds it 3 ns, and
    passes it on through a 2-packet FIFO; it reports one action per packet."""

    name = "retimer"

    def plan(self, hw, wl, upstream, graph):
        before = upstream[-1]
        n = before.transactions

        first = wl.layers[0].name

        def records(times):
            return [r for s in range(wl.samples)
                    for r in (Record(s, "-", None, "retimer", "packets_held", float(n), "count"),
                              Record(s, first, None, "retimer", "energy.hold", 0.5 * n, "pJ"))]

        return chain.Plan(name=self.name, service_ps=np.full((wl.samples, n), 3000, np.int64),
                          consume=np.ones(n, np.int64), produce=np.ones(n, np.int64), fifo_after=2,
                          time_keys="retimer (a test unit)", details={"hold_ps": 3000}, records=records,
                          delivery=before.delivery)  # it hands on the link's packets unchanged


def test_a_new_component_joins_the_chain_without_touching_the_orchestration(monkeypatch):
    hw = load_hardware("hwconfigs/p2m_digits.yaml")
    wl = load_workload("workloads/digits_snn.npz")
    plain = simulate(hw, wl)
    monkeypatch.setattr("snnsim.simulation.build_chain",
                        lambda hw: [chain.Sensor(), chain.Link(), Retimer(), chain.Core()])
    more = simulate(hw, wl)
    assert more.meta["engine"]["stages"] == ["sensor", "link", "retimer", "core"]
    assert more.meta["engine"]["fifo_capacity"] == {
        "sensor->link": plain.meta["engine"]["fifo_capacity"]["sensor->link"],
        "link->retimer": hw["link"]["output_fifo_packets"], "retimer->core": 2}
    assert more.meta["retimer"] == {"hold_ps": 3000}
    held = [r for r in more.records if r.component == "retimer" and r.metric == "packets_held"]
    assert len(held) == wl.samples and held[0].value == 8 * 4  # 8 P2M rows x 4 steps of packets
    # the extra stage delays every frame, and the core's work is the same
    assert more.summary["delay"]["latency_ps_mean"] > plain.summary["delay"]["latency_ps_mean"]
    assert more.summary["operations"]["synaptic_ops_per_frame"] == plain.summary["operations"]["synaptic_ops_per_frame"]
    assert more.summary["delay"]["stages"]["retimer"]["busy_ps"] == wl.samples * 32 * 3000
    # its energy is in the summary: by component, in the total and in the first layer's
    e, e0 = more.summary["energy"], plain.summary["energy"]
    assert e["by_component_pj_per_frame"]["retimer"] == 16.0
    assert e["dynamic_pj_per_frame"] == pytest.approx(e0["dynamic_pj_per_frame"] + 16.0, rel=1e-12)
    layer0 = [la for la in more.summary["layers"] if la["name"] == wl.layers[0].name][0]
    layer0_plain = [la for la in plain.summary["layers"] if la["name"] == wl.layers[0].name][0]
    assert layer0["energy_pj_per_frame"] == pytest.approx(layer0_plain["energy_pj_per_frame"] + 16.0, rel=1e-12)
    assert "retimer" not in e0["by_component_pj_per_frame"]


def test_the_orchestration_names_no_component():
    text = (ROOT / "simulator" / "snnsim" / "simulation.py").read_text()
    code = re.sub(r'""".*?"""', "", text, flags=re.S)  # docstrings may describe the chain
    code = re.sub(r"#.*", "", code)
    for name in ("sensor", "link", "core", "pim", "dram"):
        assert not re.search(rf"\b{name}\b", code, flags=re.I), name
