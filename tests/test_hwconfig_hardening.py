"""Hostile and mistaken hwconfig input: each is refused with one bounded ConfigError, fast.

Alias bombs, deep nesting, duplicate keys, YAML 1.1 number quirks, values from --set blamed on
the file, files that are not hwconfigs at all, and values large enough to overflow time or energy.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml
from snnsim import hwconfig
from snnsim.cli import main
from snnsim.energy import load_energy_table
from snnsim.errors import MAX_FOUND_CHARS, ConfigError, SnnsimError
from snnsim.hwconfig import load_hardware, read_yaml
from snnsim.schema import ENERGY_OVERRIDE, HWCONFIG, iter_fields, json_schema, markdown_reference
from snnsim.units import ns_to_ps, period_ps, us_to_ps

MINIMAL = "sensor: {}\nlink: {}\ncore: {}\n"
INT64_MAX = 2**63 - 1


def _write(tmp_path: Path, text: str, name: str = "hw.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _alias_bomb(levels: int = 9, fanout: int = 9) -> str:
    """'Billion laughs': each anchor lists the previous one ``fanout`` times (fanout^levels leaves)."""
    parts = ["&a0 [" + ", ".join(['"lol"'] * fanout) + "]"]
    for i in range(1, levels):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return MINIMAL + "description: [\n  " + ",\n  ".join(parts) + "]\n"


# 1. alias bombs and message size ----------------------------------------------------------------

def test_alias_bomb_is_refused_fast_with_file_and_line(tmp_path):
    text = _alias_bomb()
    assert 400 < len(text) < 4000  # a few KB that would expand to 9^9 = 387 million strings
    path = _write(tmp_path, text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert time.perf_counter() - t0 < 2.0
    assert e.value.file == str(path)
    assert e.value.key.startswith("line ")
    assert "alias" in e.value.message.lower()
    assert len(str(e.value)) < 1000


def test_more_than_100_aliases_refused_even_when_small(tmp_path):
    ok = "x: &x 1\ny: [" + ", ".join(["*x"] * hwconfig.MAX_ALIASES) + "]\n"
    assert read_yaml(_write(tmp_path, ok, "ok.yaml"))["y"] == [1] * hwconfig.MAX_ALIASES
    bad = "x: &x 1\ny: [" + ", ".join(["*x"] * (hwconfig.MAX_ALIASES + 1)) + "]\n"
    path = _write(tmp_path, bad, "bad.yaml")
    with pytest.raises(ConfigError) as e:
        read_yaml(path)
    assert e.value.file == str(path) and "too many YAML aliases" in e.value.message
    assert e.value.key.startswith("line 2,")


def test_recursive_alias_refused(tmp_path):
    path = _write(tmp_path, MINIMAL + "description: &r [1, *r]\n")
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert "recursive" in e.value.message and e.value.file == str(path)


def test_every_error_clips_found_and_expected_once():
    err = ConfigError("bad", file="f.yaml", key="k", expected="e" * 5000, found="x" * 1_000_000)
    assert err.found == "x" * MAX_FOUND_CHARS + f"... ({1_000_000 - MAX_FOUND_CHARS} more characters)"
    assert err.expected.endswith(f"... ({5000 - MAX_FOUND_CHARS} more characters)")
    assert len(err.render()) < 1000
    # re-raising with another error's text keeps the original count, not a count of the clipped text
    again = SnnsimError(err.message, found=err.found, expected=err.expected)
    assert again.found == err.found and again.expected == err.expected
    assert ConfigError("short", found="abc").found == "abc"


def test_huge_values_are_quoted_back_bounded():
    for value in ("x" * 1_000_000, [[list(range(1000))] * 1000], 10**5000):
        with pytest.raises(ConfigError) as e:
            load_hardware({"sensor": {}, "link": {"lanes": value}, "core": {}})
        assert e.value.key == "link.lanes"
        assert len(str(e.value)) < 1000


# 2. deep nesting --------------------------------------------------------------------------------

@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_nesting_refused_without_recursion_error(tmp_path, opener):
    path = _write(tmp_path, "a: " + opener * 1000 + "\n")
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert e.value.file == str(path) and "nested too deeply" in e.value.message


def test_deep_nesting_in_a_mapping_given_directly():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ConfigError) as e:
        load_hardware({"sensor": {}, "link": {}, "core": {}, "description": deep})
    assert e.value.file == "<dict>"


# 3. duplicate keys ------------------------------------------------------------------------------

def test_duplicate_key_names_key_and_both_lines(tmp_path):
    path = _write(tmp_path, "name: a\nsensor: {}\nlink:\n  lanes: 2\n  lanes: 4\ncore: {}\n")
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert e.value.file == str(path)
    assert "'lanes'" in e.value.message
    assert "line 4" in e.value.found and "line 5" in e.value.found


def test_duplicate_top_level_key_in_flow_style(tmp_path):
    path = _write(tmp_path, MINIMAL + "name: a\nname: b\n")
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert "line 4" in e.value.found and "line 5" in e.value.found


def test_merge_key_may_still_be_overridden_explicitly(tmp_path):
    path = _write(tmp_path, "sensor: {}\ncore: {}\nlink:\n  <<: {lanes: 2, gbps_per_lane: 1.0}\n  lanes: 4\n")
    hw = load_hardware(path)
    assert hw.get("link.lanes") == 4 and hw.get("link.gbps_per_lane") == 1.0


# 4. YAML 1.2 floats -----------------------------------------------------------------------------

EXPONENT_FLOATS = ["1e-3", "2e6", "1E+3", ".5e-3", "1.5e6", "-2e-1", "1_0e2"]


@pytest.mark.parametrize("text", EXPONENT_FLOATS)
def test_exponent_floats_are_numbers_in_files(tmp_path, text):
    value = float(text.replace("_", ""))
    path = _write(tmp_path, MINIMAL + f"technology: {{overrides: {{core.ac: {text}}}}}\n")
    if value < 0:
        with pytest.raises(ConfigError) as e:
            load_hardware(path)
        assert ">= 0" in e.value.expected  # a number out of range, not "give a plain number"
        return
    assert load_hardware(path).energy.pj("core.ac") == value


@pytest.mark.parametrize("text", EXPONENT_FLOATS)
def test_exponent_floats_are_numbers_in_overrides(text):
    assert hwconfig._parse_value(text) == float(text.replace("_", ""))


def test_other_scalars_keep_their_yaml_types(tmp_path):
    parse = hwconfig._parse_value
    assert parse("true") is True and parse("false") is False
    assert parse("4") == 4 and isinstance(parse("4"), int)
    assert parse("'1e-3'") == "1e-3" and parse('"2e6"') == "2e6"
    assert parse("1e") == "1e" and parse("e3") == "e3"
    hw = load_hardware(_write(tmp_path, MINIMAL + "name: '1e-3'\n"))
    assert hw.name == "1e-3"
    hw = load_hardware("hwconfigs/p2m.yaml", ["core.clock_mhz=2.5e2", "link.line_blanking_ns=1e3"])
    assert hw.get("core.clock_mhz") == 250.0 and hw.get("link.line_blanking_ns") == 1000.0
    # the shared PyYAML loader is left as it was
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"


def test_overlong_numbers_refused(tmp_path):
    path = _write(tmp_path, "sensor: {}\ncore: {}\nlink: {lanes: 1" + "0" * 5000 + "}\n")
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert e.value.file == str(path) and "line 3" in e.value.key
    with pytest.raises(ConfigError) as e:
        load_hardware("hwconfigs/p2m.yaml", ["link.lanes=1" + ":59" * 10_000])
    assert e.value.file == "--set" and e.value.key == "link.lanes"


# 5. --set values are blamed on --set ------------------------------------------------------------

def test_bad_override_value_names_set_not_the_file():
    with pytest.raises(ConfigError) as e:
        load_hardware("hwconfigs/p2m.yaml", ["link.lanes=abc"])
    assert e.value.file == "--set" and e.value.key == "link.lanes"
    assert "p2m.yaml" not in str(e.value)
    assert e.value.suggestion is None  # "abc" is no number with a unit
    with pytest.raises(ConfigError) as e:
        load_hardware("hwconfigs/p2m.yaml", [("core.clock_mhz", -1.0)])
    assert e.value.file == "--set" and e.value.key == "core.clock_mhz"


def test_bad_file_value_still_names_the_file_when_other_keys_are_overridden(tmp_path):
    path = _write(tmp_path, "sensor: {}\ncore: {}\nlink: {lanes: abc}\n")
    with pytest.raises(ConfigError) as e:
        load_hardware(path, ["link.gbps_per_lane=2"])
    assert e.value.file == str(path) and e.value.key == "link.lanes"


def test_technology_overrides_from_set_name_set():
    with pytest.raises(ConfigError) as e:
        load_hardware("hwconfigs/p2m.yaml", ["technology.overrides.core.acc=1"])
    assert e.value.file == "--set" and "core.ac" in e.value.suggestion
    with pytest.raises(ConfigError) as e:
        load_hardware("hwconfigs/p2m.yaml", ["technology.table=p2m_papr"])
    assert e.value.file == "--set" and "p2m_paper" in e.value.suggestion
    hw = load_hardware("hwconfigs/p2m.yaml", ["technology.overrides.core.ac=2"])
    assert hw.energy.pj("core.ac") == 2.0 and "override in --set" in hw.energy.entry("core.ac").source


def test_cli_bad_override_exits_2_naming_set(tiny_hw_files, capsys):
    p2m, _ = tiny_hw_files
    code, _, err = _run(["validate", p2m, "--set", "link.lanes=abc"], capsys)
    assert code == 2 and "--set: link.lanes" in err and "Traceback" not in err
    assert str(p2m) not in err


# 6. files that are not hwconfigs ----------------------------------------------------------------

def test_trace_given_as_hwconfig_says_so(tmp_path, tiny_trace):
    for path in (tiny_trace, _write(tmp_path, "", "renamed.yaml")):
        if path.suffix == ".yaml":
            path.write_bytes(tiny_trace.read_bytes())
        with pytest.raises(ConfigError) as e:
            load_hardware(path)
        assert "spike trace" in e.value.found and "HWCONFIG then TRACE" in e.value.suggestion
    text_npz = _write(tmp_path, MINIMAL, "named.npz")
    with pytest.raises(ConfigError) as e:
        load_hardware(text_npz)
    assert "spike trace" in e.value.found


def test_swapped_arguments_on_the_command_line(tiny_hw_files, tiny_trace, capsys):
    p2m, _ = tiny_hw_files
    code, _, err = _run(["run", tiny_trace, p2m], capsys)
    assert code == 2 and "Traceback" not in err
    assert "spike trace" in err and "HWCONFIG then TRACE" in err
    assert "undecodable byte" not in err


def test_hdf5_given_as_hwconfig_says_what_it_is(tmp_path):
    path = tmp_path / "graph.nir"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert "HDF5" in e.value.found and "NIR" in e.value.found
    assert "from-nir" in e.value.suggestion


def test_name_too_long_is_a_config_error(tmp_path):
    path = tmp_path / ("x" * 300 + ".yaml")
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert e.value.message == "file name too long" and "ENAMETOOLONG" in e.value.found


def test_unreadable_file_is_a_config_error(tmp_path, monkeypatch):
    path = _write(tmp_path, MINIMAL)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert e.value.file == str(path) and "EACCES" in e.value.found and "permission" in e.value.suggestion


def test_nul_in_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_hardware(str(tmp_path / "a\x00b.yaml"))
    assert "NUL" in e.value.found


def test_huge_file_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB of zeros costs no disk
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        load_hardware(path)
    assert time.perf_counter() - t0 < 1.0
    assert "too large" in e.value.message and e.value.file == str(path)


# 7. bounds that keep time and energy in range ---------------------------------------------------

@pytest.mark.parametrize("override, word", [
    ("core.clock_mhz=1.0e-7", ">= 0.001"),
    ("core.clock_mhz=2e6", "<= 1e+06"),
    ("sensor.adc_counter_clock_mhz=1e-4", ">= 0.001"),
    ("link.line_blanking_ns=1.0e+15", "<= 1e+09"),
    ("sensor.p2m.row_overhead_ns=2e9", "<= 1e+09"),
    ("sensor.frame_period_us=1e9", "<= 1e+08"),
    ("core.weight_sram_kib=2e9", "<= 1073741824"),
    ("dram.bandwidth_gbytes_per_s=1e-4", ">= 0.001"),
    ("dram.bandwidth_gbytes_per_s=1e6", "<= 100000"),
    ("sensor.pixel_rows=10000000", "<= 100000"),
    ("link.output_fifo_packets=1e12", "<= 1000000"),
    ("technology.overrides.core.ac=1.0e+300", "<= 1e+09"),
])
def test_values_that_would_overflow_are_refused(override, word):
    with pytest.raises(ConfigError) as e:
        load_hardware("hwconfigs/p2m.yaml", [override])
    assert e.value.key == override.split("=")[0] and e.value.file == "--set"
    assert word in e.value.expected


def test_bounds_themselves_are_accepted():
    hw = load_hardware("hwconfigs/p2m.yaml", ["core.clock_mhz=1e-3", "sensor.adc_counter_clock_mhz=1e6",
                                              "link.line_blanking_ns=1e9", "sensor.frame_period_us=1e8",
                                              "technology.overrides.core.ac=1e9"])
    assert hw.get("core.clock_mhz") == 1e-3 and hw.energy.pj("core.ac") == 1e9


def test_every_numeric_key_is_bounded_so_one_key_cannot_overflow_time():
    for path, f in iter_fields(HWCONFIG):
        if f.type in ("int", "float"):
            assert f.minimum is not None and f.maximum is not None, path
            assert math.isfinite(f.maximum), path
        if path.endswith("_ns"):
            assert ns_to_ps(f.maximum) <= 10**12, path
        if path.endswith("_us"):
            assert us_to_ps(f.maximum) <= 10**14, path
        if path.endswith("clock_mhz"):
            assert period_ps(f.minimum) <= 10**9 and period_ps(f.maximum) >= 1, path
        if path.endswith("_kib"):
            assert f.maximum * 1024 * 8 < INT64_MAX, path
    # a single longest duration or cycle leaves room for millions of them in int64 picoseconds
    assert INT64_MAX // 10**12 > 10**6
    assert ENERGY_OVERRIDE.minimum == 0 and ENERGY_OVERRIDE.maximum == 1e9


def test_bounds_reach_json_schema_and_markdown():
    schema = json_schema()
    clock = schema["properties"]["core"]["properties"]["clock_mhz"]
    assert clock["minimum"] == 1e-3 and clock["maximum"] == 1e6 and "exclusiveMinimum" not in clock
    kib = schema["properties"]["core"]["properties"]["weight_sram_kib"]
    assert kib["exclusiveMinimum"] == 0 and kib["maximum"] == 2**30
    values = schema["properties"]["technology"]["properties"]["overrides"]["additionalProperties"]
    assert values["type"] == "number" and values["minimum"] == 0 and values["maximum"] == 1e9
    json.dumps(schema)
    text = markdown_reference()
    assert "| `core.clock_mhz` | float | `500.0` | >= 0.001 and <= 1e+06 |" in text
    assert "| `link.line_blanking_ns` | float | `0.0` | >= 0 and <= 1e+09 |" in text
    assert "| `link.output_fifo_packets` | int | `4` | >= 1 and <= 1000000 |" in text
    overrides_line = next(line for line in text.splitlines() if line.startswith("`technology.overrides`"))
    assert ">= 0 and <= 1e+09" in overrides_line


# 8. technology.overrides: one check of names and values -----------------------------------------

@pytest.mark.parametrize("value", [True, None, "abc", "1.5 pJ", -1.0, math.nan, math.inf, 1e300, [1.0]])
def test_energy_override_values_refused(value):
    cfg = {"sensor": {}, "link": {}, "core": {}, "technology": {"overrides": {"link.bit": value}}}
    with pytest.raises(ConfigError) as e:
        load_hardware(cfg)
    assert e.value.key == "technology.overrides.link.bit"
    # the energy module applies the same check to callers that skip the schema
    with pytest.raises(ConfigError) as e:
        load_energy_table("p2m_paper", {"link.bit": value}, "api")
    assert e.value.key == "technology.overrides.link.bit" and e.value.file == "api"


def test_energy_override_unknown_name_suggests():
    with pytest.raises(ConfigError) as e:
        load_energy_table("p2m_paper", {"core.acc": 1.0})
    assert e.value.key == "technology.overrides.core.acc" and "core.ac" in e.value.suggestion


@pytest.mark.parametrize("text", ["0224", "-0224", "1:30", "1:30.5", "0_7"])
def test_yaml_1_1_octal_and_base_60_numbers_are_refused(text):
    """YAML 1.1 reads 0224 as 148 and 1:30 as 90: a silently wrong number, so it is refused."""
    with pytest.raises(ConfigError) as e:
        load_hardware({"sensor": {}, "link": {}, "core": {}}, [f"sensor.row_overhead_ns={text}"])
    assert "ambiguous number" in e.value.message and e.value.file == "--set"
