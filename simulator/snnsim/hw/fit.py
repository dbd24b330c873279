"""Whether a trace fits a chip: every mismatch between a workload and a hwconfig, found at once.

Fitting a chip to a model used to take one refused run per mismatch. Each component lists what
keeps the workload from running on it (the sensor: image size, colour model, the in-pixel layer's
geometry; the link: line lengths; the core: its input, weight widths, buffer tiling), and
:func:`fit_problems` gathers them all. ``snnsim validate HWCONFIG TRACE`` prints the list;
:func:`require_fit`, called before every simulation, raises them as one error.
"""

from __future__ import annotations

from ..errors import MappingError, SnnsimError
from ..workload.graph import check_graph_once
from ..workload.trace import Workload
from .chain import in_pixels
from .core import core_problems
from .link import link_problems
from .sensor import sensor_problems


class FitError(MappingError):
    """Several reasons at once why a workload cannot run on a chip."""

    def __init__(self, problems: list[SnnsimError]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        # the first problem's fields, for callers that read one; render() lists them all
        super().__init__(f"{len(self.problems)} problems keep the trace from running on this chip",
                         file=first.file, key=first.key, expected=first.expected, found=first.found,
                         suggestion=first.suggestion)

    def render(self) -> str:
        lines = [f"{len(self.problems)} problems keep the trace from running on this chip:"]
        for i, p in enumerate(self.problems, 1):
            body = p.render().splitlines()
            lines.append(f"  {i}. {body[0]}")
            lines += [f"     {line.strip()}" for line in body[1:]]
        return "\n".join(lines)


def fit_problems(hw, wl: Workload) -> list[SnnsimError]:
    """Every mismatch between the workload and the chip, in the order the frame meets them."""
    check_graph_once(wl, wl.layers, wl.input_shape)  # shapes are filled in by the graph check
    target = hw["mapping"]["target"]
    if target == "loihi":
        from .loihi import loihi_problems

        return loihi_problems(hw, wl)
    if target == "ncs2":
        from .ncs2 import ncs2_problems

        return ncs2_problems(hw, wl)
    out: list[SnnsimError] = []
    if hw["mapping"]["input"] == "sensor":  # stored frames read from DRAM fit any first layer: it reads the frame
        out += sensor_problems(hw, wl)
        out += link_problems(hw, wl)
    pim = hw["mapping"]["pim"].strip()
    first = 1 if in_pixels(hw) or pim else 0  # layer 0 in the pixels or the PIM macro
    if pim:
        from .pim_unit import pim_problems

        out += pim_problems(hw, wl)
    else:
        out += _idle_pim_keys(hw)
    out += core_problems(hw, wl, first)
    return out


def require_fit(hw, wl: Workload) -> None:
    """Raise the mismatch (one) or a :class:`FitError` listing them all (several)."""
    problems = fit_problems(hw, wl)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise FitError(problems)


def _idle_pim_keys(hw) -> list[SnnsimError]:
    """PIM keys set while no layer is mapped to the macro would have no effect: refused."""
    from ..errors import ConfigError
    from ..schema import HWCONFIG

    fields = HWCONFIG.fields["pim"].fields
    changed = [k for k, f in fields.items() if hw["pim"][k] != f.default]
    if not changed:
        return []
    return [ConfigError("PIM macro settings have no effect: no layer is mapped to the macro", file=hw.source,
                        key=f"pim.{changed[0]}", expected="mapping.pim naming the first layer, or no pim settings",
                        found=", ".join(f"pim.{k}" for k in changed), suggestion="--set mapping.pim=0")]
