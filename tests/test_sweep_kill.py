"""A sweep killed with SIGKILL at random moments, several times, then run to the end with the same
command, gives exactly the table of a sweep never interrupted: no point lost, none twice, no
torn row. The sweep runs as a real ``snnsim sweep`` process (its own process group, so that its
pool workers die with it)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import yaml
from snnsim.cli import main
from snnsim.sweeps.store import JOURNAL, TABLE

SPEC = {"hwconfig": "p2m.yaml", "workload": "tiny.npz",
        "axes": [{"link.lanes": [1, 2, 3, 4]}, {"core.vector_width": [1, 2, 3, 4, 5, 6, 7, 8]},
                 {"core.clock_mhz": [100, 200, 300, 400, 500, 600, 700, 800]}]}
N = 4 * 8 * 8


def _lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_9_and_resume_equals_uninterrupted(tmp_path, tiny_trace, tiny_hw_files):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    ref = tmp_path / "ref"
    assert main(["sweep", str(spec), "-o", str(ref)]) == 0
    out = tmp_path / "killed"
    journal = out / JOURNAL
    rng = random.Random(12)
    cmd = [sys.executable, "-m", "snnsim", "sweep", str(spec), "-o", str(out), "--progress", "never"]
    kills_mid_run = 0
    for attempt in range(5):
        jobs = ["-j", "2"] if attempt % 2 else []
        before = _lines(journal)
        proc = subprocess.Popen(cmd + jobs, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        while _lines(journal) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.15))  # somewhere in the run, not only at its start
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if 0 < _lines(journal) < N:
                kills_mid_run += 1
        else:
            assert proc.returncode == 0, proc.stderr.read()
        assert not (out / TABLE).exists() or _lines(journal) == N
    assert kills_mid_run >= 3
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "done before" in done.stdout
    assert (out / TABLE).read_bytes() == (ref / TABLE).read_bytes()
    assert journal.read_bytes() == (ref / JOURNAL).read_bytes()
