"""Property-based fuzzing of every input a user gives: hwconfigs, ``--set`` values, manifests,
arrays and zip containers.

For every generated input, the command either succeeds (exit 0) with finite, non-negative figures,
or refuses it (exit 2) with one message that names the file or the key; never a traceback, a hang
(a per-case alarm) or a memory blow-up (a per-case tracemalloc bound)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snnsim.cli import main
from snnsim.schema import HWCONFIG, iter_fields
from snnsim.workload.trace import save_workload

from .conftest import TINY_BASE, TINY_P2M, make_tiny_workload

CASE_SECONDS = 20  # a case that takes longer is a hang
CASE_BYTES = 256 * 2**20  # and one that allocates more, a blow-up
FIELDS = list(iter_fields(HWCONFIG))
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    trace = d / "tiny.npz"
    save_workload(make_tiny_workload(samples=1, steps=2), trace)
    hw = d / "p2m.yaml"
    hw.write_text(yaml.safe_dump(TINY_P2M))
    main(["run", str(hw), str(trace), "--format", "json"])  # compile the kernels once, outside the timed cases
    return d, hw, trace


class _Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Hang


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process with a time and a memory bound; any exception escaping it fails."""
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        peak = tracemalloc.get_traced_memory()[1]
    except _Hang:
        pytest.fail(f"hang: snnsim {' '.join(map(str, argv))}")
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert peak < CASE_BYTES, f"{peak / 2**20:.0f} MiB for snnsim {' '.join(map(str, argv))}"
    return code, out.getvalue(), err.getvalue()


def _walk_numbers(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def check_outcome(code: int, out: str, err: str, names: list[str]) -> None:
    """Exit 0 with a sane report, or exit 2 with one message naming one of ``names``."""
    assert "Traceback" not in err, err
    if code == 0:
        rep = json.loads(out)
        for path, v in _walk_numbers(rep["summary"]):
            assert math.isfinite(v), f"{path} = {v}"
            assert v >= 0, f"{path} = {v}"
        return
    assert code == 2, (code, err)
    assert err.startswith("snnsim: error: "), err
    assert len(err) < 20_000, f"a {len(err)}-character message"
    assert any(n in err for n in names), err


# -- hwconfigs -----------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, -1, 1e-300, 1e300, 0.5, 2**63]),
    st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                               max_size=2),
)


def _set_path(tree: dict, path: str, value) -> None:
    node = tree
    parts = path.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


@st.composite
def hwconfig_trees(draw):
    tree = json.loads(json.dumps(draw(st.sampled_from([TINY_P2M, TINY_BASE]))))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from([p for p, _f in FIELDS] + ["sensor.bogus", "link", "technology.overrides.core.ac",
                                                                "technology.overrides.nope", "core.clock_mhz.x"]))
        value = draw(_SCALARS)
        if path == "link":
            tree["link"] = value
        else:
            with contextlib.suppress(TypeError):
                _set_path(tree, path, value)
    return tree


@SETTINGS
@given(tree=hwconfig_trees())
def test_fuzz_hwconfigs(files, tree):
    d, _hw, trace = files
    path = d / "fuzz.yaml"
    try:
        text = yaml.safe_dump(tree)
    except yaml.YAMLError:
        return
    path.write_text(text)
    code, out, err = run_cli(["run", path, trace, "--format", "json"])
    check_outcome(code, out, err, [str(path)])


_YAML_SNIPPETS = st.sampled_from([
    "a: &a [1, 2]\nb: *a\n", "x: [" * 50 + "]" * 50, "sensor: {kind: p2m}\nsensor: {kind: p2m}\n",
    "core:\n  clock_mhz: 1e-3\n", "link: {lanes: 2}\n\tbad", "%YAML 1.1\n---\n!!python/object:os.system {}\n",
    "? [a, b]\n: 1\n", "- 1\n- 2\n", "", "\x00\x01", "sensor: *undefined\n", "a: !!binary AAA=\n",
])


@SETTINGS
@given(head=_YAML_SNIPPETS, noise=st.text(max_size=40))
def test_fuzz_yaml_text(files, head, noise):
    d, _hw, trace = files
    path = d / "text.yaml"
    path.write_bytes((head + noise).encode("utf-8", errors="replace"))
    code, out, err = run_cli(["run", path, trace, "--format", "json"])
    check_outcome(code, out, err, [str(path)])


# -- --set values ----------------------------------------------------------------------------

@settings(SETTINGS, max_examples=300)
@given(key=st.sampled_from([p for p, _f in FIELDS] + ["technology.overrides.link.bit", "nope", "core", ""]),
       value=st.one_of(st.text(max_size=20), st.sampled_from(["1e-3", "1.0e+300", "-1", "0", "nan", ".inf", "true",
                                                              "[1, 2]", "{a: 1}", "9" * 400, "1e-7", "2.5",
                                                              "1.0e-7", "1.0e+15", "1.2345678901234567"])))
def test_fuzz_set_values(files, key, value):
    _d, hw, trace = files
    code, out, err = run_cli(["run", hw, trace, "--format", "json", "--set", f"{key}={value}"])
    check_outcome(code, out, err, ["--set", str(hw)])


# -- manifests and arrays --------------------------------------------------------------------

def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(), st.text(max_size=8)),
                     lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
                     max_leaves=6)


@st.composite
def manifest_edits(draw, man: dict):
    man = json.loads(json.dumps(man))
    for _ in range(draw(st.integers(1, 3))):
        node = man
        # walk down a random path of the manifest, then replace or delete what is there
        for _depth in range(draw(st.integers(0, 4))):
            keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            if not keys:
                break
            k = draw(st.sampled_from(keys))
            if not isinstance(node[k], (dict, list)):
                break
            node = node[k]
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            continue
        k = draw(st.sampled_from(keys))
        if isinstance(node, dict) and draw(st.booleans()) and draw(st.booleans()):
            del node[k]
        else:
            node[k] = draw(_JSON)
    return man


@SETTINGS
@given(data=st.data())
def test_fuzz_manifests(files, data):
    d, hw, trace = files
    arrays = _arrays(trace)
    man = json.loads(arrays["manifest"].tobytes().decode())
    edited = data.draw(manifest_edits(man))
    arrays["manifest"] = np.frombuffer(json.dumps(edited).encode(), np.uint8)
    path = d / "man.npz"
    np.savez(path, **arrays)
    code, out, err = run_cli(["run", hw, path, "--format", "json"])
    check_outcome(code, out, err, [str(path)])


_DTYPES = st.sampled_from(["uint8", "uint16", "int8", "float32", ">f4", "float64", "bool", "<U3", "complex64"])


@SETTINGS
@given(data=st.data())
def test_fuzz_arrays(files, data):
    d, hw, trace = files
    arrays = _arrays(trace)
    name = data.draw(st.sampled_from(sorted(arrays) + ["spikes/nope", "weights/c1", "thresholds/c0", "extra"]))
    shape = data.draw(st.lists(st.integers(0, 9), min_size=0, max_size=4))
    dtype = data.draw(_DTYPES)
    arrays[name] = np.zeros(shape, dtype=dtype) if data.draw(st.booleans()) else \
        np.random.default_rng(0).integers(0, 255, size=shape).astype(dtype)
    path = d / "arr.npz"
    np.savez(path, **arrays)
    code, out, err = run_cli(["run", hw, path, "--format", "json"])
    check_outcome(code, out, err, [str(path)])


# -- zip containers --------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_fuzz_zip_bytes(files, data):
    d, hw, trace = files
    raw = bytearray(trace.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    path = d / "bytes.npz"
    path.write_bytes(bytes(raw))
    code, out, err = run_cli(["run", hw, path, "--format", "json"])
    check_outcome(code, out, err, [str(path)])


@SETTINGS
@given(data=st.data())
def test_fuzz_zip_members(files, data):
    """Members renamed, stored as other things, deflated or not, with flags and headers changed."""
    d, hw, trace = files
    path = d / "members.npz"
    with zipfile.ZipFile(trace) as src:
        members = [(i, src.read(i.filename)) for i in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for info, body in members:
            what = data.draw(st.sampled_from(["keep", "keep", "rename", "deflate", "garbage", "header", "drop",
                                              "twice"]))
            name = info.filename
            if what == "drop":
                continue
            if what == "rename":
                name = data.draw(st.sampled_from([name[:-4], name + ".npy", "../" + name, name.upper()]))
            if what == "garbage":
                body = data.draw(st.binary(max_size=80))
            if what == "header":
                header_end = body.find(b"\n") + 1
                fake = data.draw(st.sampled_from([b"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
                                                  b"{'descr': '<f4', 'fortran_order': False, 'shape': (10**12,), }",
                                                  b"{'descr': '<f4', 'shape': (", b"((((((", b"{}"]))
                body = body[:10] + fake.ljust(max(header_end - 11, len(fake))) + b"\n" + body[header_end:]
            method = zipfile.ZIP_DEFLATED if what == "deflate" else zipfile.ZIP_STORED
            dst.writestr(zipfile.ZipInfo(name), body, compress_type=method)
            if what == "twice":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is told to write
                    dst.writestr(zipfile.ZipInfo(name), body)
    code, out, err = run_cli(["run", hw, path, "--format", "json"])
    check_outcome(code, out, err, [str(path)])
