"""The export matrix (reports/export_matrix): every model exports, runs on the conventional chip,
verifies, and runs on the P2M chip or is refused cleanly for the expected reason.

The whole matrix runs once (a module-scoped fixture, ~20 s); each model's columns are separate
tests so a failure names the model. A column the matrix lists as a known simulator bug is
expected to fail (strict: a fix shows up as an unexpected pass).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("snntorch")
pytest.importorskip("spikingjelly")
pytest.importorskip("nir")
pytest.importorskip("sklearn")

MATRIX_DIR = Path(__file__).resolve().parents[1] / "reports" / "export_matrix"
sys.path.insert(0, str(MATRIX_DIR))

import matrix  # noqa: E402
import models  # noqa: E402

MODELS = {m.name: m for m in models.all_models()}
CLEAN = ("MappingError", "FitError", "WorkloadError", "ConfigError")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return {r.model.name: r for r in matrix.run_matrix(tmp_path_factory.mktemp("matrix"))}


def _expect_bug(request, name: str, column: str) -> None:
    bugs = dict(MODELS[name].known_bugs)
    if column in bugs:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bugs[column]))


def test_prints_the_matrix(rows, capsys):
    table = matrix.format_text(list(rows.values()))
    with capsys.disabled():
        print("\n" + table)
    assert table.count("\n") >= len(rows) + 2
    md = matrix.format_markdown(list(rows.values()))
    assert md.count("\n| ") == len(rows) + 1 and "python reports/export_matrix/matrix.py" in md
    assert "/tmp" not in md  # no temporary paths: the file is the same on every run


def test_at_least_25_models_cover_every_construct():
    assert len(MODELS) >= 25
    covered = {c for m in MODELS.values() for c in m.constructs}
    assert set(models.CONSTRUCTS) <= covered, sorted(set(models.CONSTRUCTS) - covered)
    assert covered <= set(models.CONSTRUCTS), sorted(covered - set(models.CONSTRUCTS))  # no typos
    assert {m.framework for m in MODELS.values()} == {"snntorch", "spikingjelly", "pytorch", "nir", "ann"}


@pytest.mark.parametrize("name", list(MODELS))
def test_exports(rows, name):
    r = rows[name]
    assert r.export.status == "ok", r.export.message


@pytest.mark.parametrize("name", list(MODELS))
def test_runs_on_the_conventional_chip(rows, name, request):
    _expect_bug(request, name, "conventional")
    m, o = MODELS[name], rows[name].conventional
    if m.conventional_refusal is None:
        assert o.status == "ok", o.message
        assert o.figures["energy_nj"] > 0
        assert o.figures["spikes"] > 0, "some neuron fires"
    else:
        assert o.status == "refused" and o.error_type in CLEAN, o.message
        assert m.conventional_refusal in o.message


@pytest.mark.parametrize("name", list(MODELS))
def test_runs_on_p2m_or_is_refused_cleanly(rows, name, request):
    _expect_bug(request, name, "p2m")
    m, o = MODELS[name], rows[name].p2m
    if m.p2m_refusal is None:
        assert o.status == "ok", o.message
        assert o.figures["in_pixel"] == "sensor", "the first layer runs in the pixels"
    else:
        assert o.status == "refused" and o.error_type in CLEAN, o.message
        assert m.p2m_refusal in o.message and m.why_not_p2m


@pytest.mark.parametrize("name", list(MODELS))
def test_verifies(rows, name, request):
    _expect_bug(request, name, "verify")
    o = rows[name].verify
    assert o.status == "ok", o.message
    assert o.figures["mismatch"] == 0 and o.figures["match"] >= 1


def test_p2m_saves_energy_where_it_runs(rows):
    """Where the first layer is in the pixels, the P2M chip spends less energy per frame than the
    conventional one on the same trace for most models (its readout is one conversion per output,
    not per photodiode)."""
    both = [r for r in rows.values() if r.p2m.status == "ok" and r.conventional.status == "ok"]
    assert len(both) >= 15
    cheaper = sum(r.p2m.figures["energy_nj"] < r.conventional.figures["energy_nj"] for r in both)
    assert cheaper >= len(both) * 0.8
