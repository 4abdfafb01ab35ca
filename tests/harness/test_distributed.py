"""`rackbench run --distributed`: two local processes on loopback (gloo CPU collectives, 2 host
devices each) measure together and process 0 alone stores the set; plus how the arguments are
found from flags and launcher environments."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.distributed import launcher, resolve
from harness.errors import UserError
from harness.resultset import load

ROOT = Path(__file__).resolve().parents[2]
# The real entry point, as the `rackbench` script runs it.
MAIN = "import sys; from harness import cli; sys.exit(cli.main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_loopback_measure_together_and_process_0_stores(tmp_path):
    port = _free_port()
    out = tmp_path / "set.json"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "XLA_FLAGS"}
    env.update(JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MAIN, "run", "--suite", "quick", "--quiet",
             "--filter", "^collective/|^matmul/fp32/128x128x128$", "--min-time-s", "0.002",
             "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
             "--process-id", str(i), "--out-file", str(out)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(logs)[-4000:]
    assert f"stored: {out}" in logs[0] and "process 1 of 2: measured" in logs[1]

    rs = load(out)
    dev = rs.meta["device"]
    assert dev["process_count"] == 2 and dev["count"] == 4 and dev["local_count"] == 2
    assert rs.meta["distributed"]["process_count"] == 2 and rs.meta["distributed"]["source"] == "flags"
    coll = [c for c in rs.cases if c.group == "collective"]
    assert len(coll) == 6 and all(c.status == "ok" for c in coll), [(c.name, c.reason) for c in coll]
    for c in coll:
        assert c.params["ranks"] == 4 and c.check["error"] == 0.0
        assert len(c.extra["process_medians_s"]) == 2 and c.extra["busbw_bytes_per_s"] > 0
        assert any(n.startswith("lock-step over 2 processes") for n in c.timing["notes"])
    (mm,) = [c for c in rs.cases if c.group == "matmul"]
    assert mm.status == "ok"  # a per-device case, run by each process on its own first device


def test_flags_come_first():
    spec = resolve("10.0.0.1:1234", 2, 1, environ={"SLURM_JOB_ID": "7"})
    assert spec == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1, "source": "flags"}


def test_launcher_environments():
    slurm = {k: "1" for k in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")}
    assert launcher(slurm) == "slurm"
    # under SLURM and mpirun jax fills in what is missing itself
    assert resolve(None, None, None, environ=slurm)["source"] == "slurm"
    assert launcher({"OMPI_MCA_orte_hnp_uri": "x"}) == "open-mpi"
    jax_env = {"JAX_COORDINATOR_ADDRESS": "h0:99", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert resolve(None, None, None, environ=jax_env) == {
        "coordinator_address": "h0:99", "num_processes": 4, "process_id": 3, "source": "JAX_* environment"}
    ompi5 = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "JAX_COORDINATOR_ADDRESS": "h0:99"}
    spec = resolve(None, None, None, environ=ompi5)
    assert (spec["num_processes"], spec["process_id"]) == (2, 1)


@pytest.mark.parametrize("args, message", [
    ((None, None, None), "no launcher environment found"),
    (("10.0.0.1", 2, 0), "expected HOST:PORT"),
    (("h:1", 2, 2), r"process id 2: must be in 0\.\.1"),
    (("h:1", 0, 0), "process count 0"),
    (("h:1", None, 0), "the coordinator address, the process count"),
])
def test_bad_arguments_are_user_errors(args, message):
    with pytest.raises(UserError, match=message):
        resolve(*args, environ={})


def test_coordinator_flag_without_distributed_is_a_user_error(monkeypatch, capsys):
    from harness import cli

    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "8")  # so `run` leaves XLA_FLAGS alone
    assert cli.main(["run", "--coordinator", "h:1"]) == 2
    assert "need --distributed" in capsys.readouterr().err
