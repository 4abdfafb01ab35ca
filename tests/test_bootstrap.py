"""scripts/bootstrap on a simulated GPU image: JAX lives only in a "parent" virtual environment
(the image's python3 is /opt/torch/.venv/bin/python3), `venv` has no ensurepip (Debian-style),
and nothing can be downloaded (PIP_NO_INDEX=1, no pip configuration, no find-links).

The parent is a venv made from the base interpreter of the venv running these tests; its
site-packages holds (as links) every package this test venv has except rackbench itself, so JAX,
pip and the build tools are importable from the parent and not from the base interpreter: what
a venv made with `--system-site-packages` from the parent inherits (the bug simulated, and
checked, below).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
pytestmark = pytest.mark.slow  # venvs and an offline editable install: ~10-20 s each

_BLOCKER = """\
import sys
BLOCKED = {blocked!r}
class _Missing:
    # raises rather than returns None, so no later finder on sys.path finds the module either
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
        return None
sys.meta_path.insert(0, _Missing())
if "ensurepip" in BLOCKED:
    # `venv` runs ensurepip in the new interpreter with -I, out of this file's reach: fail its
    # pip step here, as a python without ensurepip does
    import venv
    def _no_ensurepip(self, context):
        raise SystemExit("Error: ensurepip is not available (hidden by the test)")
    venv.EnvBuilder._setup_pip = _no_ensurepip
"""
# What of this test venv the parent must not hold: this checkout's own installation.
_OURS = re.compile(r"rackbench", re.I)


def _package_dirs() -> list[str]:
    """This interpreter's package directories, as resolved (nested .pth files already run)."""
    stdlib = {os.path.realpath(sysconfig.get_path(k)) for k in ("stdlib", "platstdlib")}
    stdlib |= {os.path.join(p, "lib-dynload") for p in stdlib}
    return [p for p in sys.path if p and os.path.isdir(p) and os.path.realpath(p) not in stdlib
            and os.path.realpath(p) != str(ROOT)]


def _run(cmd, cwd=None, env=None, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A venv without pip of its own whose site-packages links to every package of the test
    venv but rackbench: JAX lives only there."""
    if _run([BASE_PYTHON, "-c", "import jax"]).returncode == 0:
        pytest.skip(f"the base interpreter {BASE_PYTHON} has JAX itself: no venv-only JAX to simulate")
    root = tmp_path_factory.mktemp("parent")
    r = _run([BASE_PYTHON, "-m", "venv", "--without-pip", root / "venv"])
    assert r.returncode == 0, r.stderr
    py = root / "venv" / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    for d in _package_dirs():
        for entry in os.listdir(d):
            if not _OURS.search(entry) and not (site / entry).exists():
                (site / entry).symlink_to(Path(d, entry))
    return py


def _offline_env(blocker_dir: Path, python: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONPATH=str(blocker_dir), PYTHON=str(python), VENV=".venv", JAX_PLATFORMS="cpu")
    return env


def _blocker(tmp_path: Path, blocked: set[str]) -> Path:
    d = tmp_path / "blocker"
    d.mkdir()
    (d / "sitecustomize.py").write_text(_BLOCKER.format(blocked=sorted(blocked)))
    return d


def _checkout_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for d in ("harness", "kernels", "clusters", "scripts"):
        shutil.copytree(ROOT / d, repo / d, ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, repo / f)
    return repo


def _can_build_editable_here() -> bool:
    try:
        import setuptools
    except ImportError:  # Python 3.12 venvs come without it
        return False

    v = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    return v >= (64, 0) and (v >= (70, 1) or importlib.util.find_spec("wheel") is not None)


def test_the_simulation_reproduces_the_bug(parent, tmp_path):
    """The planted fault: the parent imports JAX, but a venv made from it with
    --system-site-packages (the old bootstrap) does not; and with the blocker on the path,
    `venv` fails the Debian way, for want of ensurepip."""
    assert _run([parent, "-c", "import jax"]).returncode == 0
    assert _run([parent, "-m", "venv", "--without-pip", "--system-site-packages", tmp_path / "old"]).returncode == 0
    r = _run([tmp_path / "old" / "bin" / "python", "-c", "import jax"])
    assert r.returncode != 0 and "No module named 'jax'" in r.stderr
    env = _offline_env(_blocker(tmp_path, {"ensurepip"}), parent)
    r = _run([parent, "-m", "venv", tmp_path / "debian"], env=env)
    assert r.returncode != 0 and "ensurepip" in r.stdout + r.stderr


@pytest.mark.parametrize("hidden", [set(), {"setuptools", "wheel"}], ids=["build-tools", "no-build-tools"])
def test_bootstrap_uses_the_parent_venv_offline(parent, tmp_path, hidden):
    repo = _checkout_copy(tmp_path)
    env = _offline_env(_blocker(tmp_path, {"ensurepip"} | hidden), parent)
    r = _run(["bash", "scripts/bootstrap"], cwd=repo, env=env)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "uses its packages (no downloads)" in log
    editable = not hidden and _can_build_editable_here()
    assert ("installed in editable mode" in log) == editable, log
    assert ("source tree on its path" in log) == (not editable), log

    venv_py = repo / ".venv" / "bin" / "python"
    # run from outside both checkouts: `python -c` puts the working directory on the path
    where = _run([venv_py, "-c", "import harness, jax; print(harness.__file__); print(jax.__file__)"],
                 cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    harness_file, jax_file = where.stdout.split()
    assert Path(harness_file).resolve().is_relative_to(repo.resolve())  # this copy's code
    assert Path(jax_file).is_relative_to(parent.parent.parent)  # found through the parent venv
    devices = _run([repo / ".venv" / "bin" / "rackbench", "devices"], cwd=repo, env=env)
    assert devices.returncode == 0, devices.stderr
    assert "platform: cpu" in devices.stdout
    if editable:
        version = _run([venv_py, "-c", "import importlib.metadata as m; print(m.version('rackbench'))"], env=env)
        assert version.stdout.strip() == "0.1.0", version.stderr
    # a second call finds the stamp and does nothing
    again = _run(["bash", "scripts/bootstrap"], cwd=repo, env=env)
    assert again.returncode == 0 and again.stdout == ""


def test_no_jax_no_ensurepip_uses_the_parents_pip(parent, tmp_path):
    """Without the stack the bootstrap installs from the index; without ensurepip it must still
    make the venv (with the parent's pip) and reach the install, which fails here only because
    the index is switched off."""
    repo = _checkout_copy(tmp_path)
    env = _offline_env(_blocker(tmp_path, {"ensurepip", "jax"}), parent)
    r = _run(["bash", "scripts/bootstrap"], cwd=repo, env=env)
    log = r.stdout + r.stderr
    assert "has no ensurepip" in log, log
    assert (repo / ".venv" / "bin" / "python").exists()
    assert r.returncode != 0 and re.search(r"no matching distribution|could not find a version", log, re.I), log
    assert not (repo / ".venv" / ".rackbench-installed").exists()


def test_a_missing_interpreter_is_one_line_and_exit_2(tmp_path):
    repo = _checkout_copy(tmp_path)
    env = dict(os.environ, PYTHON=str(tmp_path / "no-such-python"))
    r = _run(["bash", "scripts/bootstrap"], cwd=repo, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such interpreter" in r.stderr
    assert r.stdout == ""
