"""hwconfig loading: defaults, overrides, and one clear error for each kind of bad input."""

from __future__ import annotations

import json

import pytest
from snnsim.errors import ConfigError
from snnsim.hwconfig import load_hardware
from snnsim.schema import HWCONFIG, iter_fields, json_schema


def test_shipped_hwconfigs_load_and_fill_defaults():
    hw = load_hardware("hwconfigs/p2m.yaml")
    assert hw.name == "p2m"
    assert hw.get("sensor.p2m.out_channels") == 64
    assert hw.get("link.t_hs_exit_ns") == 100.0  # default filled
    assert hw.energy.pj("p2m.adc_conversion") == pytest.approx(41.9)
    base = load_hardware("hwconfigs/baseline.yaml")
    assert base.get("sensor.kind") == "conventional"


def test_overrides_are_typed_and_applied():
    hw = load_hardware("hwconfigs/p2m.yaml", ["link.lanes=4", "core.clock_mhz=250", "link.continuous_clock=false"])
    assert hw.get("link.lanes") == 4
    assert hw.get("core.clock_mhz") == 250.0
    assert hw.get("link.continuous_clock") is False


def test_technology_override_records_its_source():
    hw = load_hardware({"sensor": {}, "link": {}, "core": {},
                        "technology": {"overrides": {"link.bit": 5.0}}})
    assert hw.energy.pj("link.bit") == 5.0
    assert "override" in hw.energy.entry("link.bit").source


@pytest.mark.parametrize(
    "cfg, key, hint",
    [
        ({"sensor": {}, "link": {"lane": 2}, "core": {}}, "link.lane", "lanes"),
        ({"sensor": {"kind": "p2mm"}, "link": {}, "core": {}}, "sensor.kind", "p2m"),
        ({"sensor": {}, "link": {"lanes": 0}, "core": {}}, "link.lanes", None),
        ({"sensor": {}, "link": {"lanes": "two"}, "core": {}}, "link.lanes", None),
        ({"sensor": {}, "link": {"gbps_per_lane": "1.5 Gbps"}, "core": {}}, "link.gbps_per_lane", "unit"),
        ({"sensor": {}, "link": {}, "core": {"clock_mhz": -5}}, "core.clock_mhz", None),
        ({"sensor": {}, "link": {}}, "core", None),
        ({"sensor": {}, "link": {}, "core": {}, "technology": {"table": "p2m_papr"}}, "technology.table", "p2m_paper"),
        ({"sensor": {}, "link": {}, "core": {}, "technology": {"overrides": {"link.bits": 1.0}}},
         "technology.overrides.link.bits", "link.bit"),
        ({"sensor": {}, "link": {}, "core": {"vector_width": 2.5}}, "core.vector_width", None),
    ],
)
def test_bad_config_names_key_and_suggests(cfg, key, hint):
    with pytest.raises(ConfigError) as e:
        load_hardware(cfg)
    assert e.value.key == key
    if hint:
        assert hint in (e.value.suggestion or "") or hint in (e.value.expected or "")


def test_bad_override(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_hardware("hwconfigs/p2m.yaml", ["link.lanse=4"])
    assert "link.lanes" in e.value.suggestion
    with pytest.raises(ConfigError):
        load_hardware("hwconfigs/p2m.yaml", ["link.lanes"])
    with pytest.raises(ConfigError):
        load_hardware("hwconfigs/p2m.yaml", ["link=4"])


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sensor:\n  kind: p2m\n link: [\n")
    with pytest.raises(ConfigError) as e:
        load_hardware(bad)
    assert e.value.file == str(bad) and "line" in e.value.key
    with pytest.raises(ConfigError) as e:
        load_hardware(tmp_path / "nope.yaml")
    assert "not found" in e.value.message
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError):
        load_hardware(top)


def test_json_schema_covers_every_field():
    schema = json_schema()
    text = json.dumps(schema)
    assert schema["additionalProperties"] is False
    for path, _f in iter_fields(HWCONFIG):
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        assert "description" in node and "default" in node
    assert "gbps_per_lane" in text


def test_markdown_reference_is_current():
    from pathlib import Path

    from snnsim.schema import markdown_reference

    text = markdown_reference()
    for path, _f in iter_fields(HWCONFIG):
        assert f"`{path}`" in text
    assert Path("docs/hwconfig.md").read_text().rstrip() == text.rstrip(), "regenerate: snnsim schema --markdown > docs/hwconfig.md"
