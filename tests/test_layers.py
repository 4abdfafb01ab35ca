"""The layering rule of ARCHITECTURE.md, checked on the source: imports run only harness ->
clusters and harness -> kernels; clusters never imports JAX (nor the heavy measuring stack, so
the model commands start fast); no module imports another module's private names. Imports
inside functions count. The checker is proven on a tree with planted violations."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "clusters", "harness")
# What each package may not import (top-level module names), inside functions too.
FORBIDDEN = {
    "kernels": {"harness", "clusters"},
    "clusters": {"harness", "kernels", "jax", "jaxlib", "optax", "scipy", "pandas",
                 "matplotlib"},
    "harness": set(),
}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(line, imported module, names) for every import, relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, ()
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([target] if target else []))
            yield node.lineno, target, tuple(a.name for a in node.names)


def violations(root: Path) -> list[str]:
    out = []
    ours = set(PACKAGES)
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            module = _module_name(root, path)
            tree = ast.parse(path.read_text(), str(path))
            for line, target, names in _imports(tree, module, path.name == "__init__.py"):
                top = target.split(".")[0]
                where = f"{path.relative_to(root)}:{line}"
                if top in FORBIDDEN[pkg]:
                    out.append(f"{where}: {pkg} imports {target}")
                if top in ours and target != module:
                    private = [n for n in names if n.startswith("_") and n != "__future__"]
                    if private:
                        out.append(f"{where}: imports private {', '.join(private)} of {target}")
    return out


def test_the_repository_keeps_its_layers():
    assert violations(ROOT) == []


@pytest.mark.parametrize("package, code, expected", [
    ("clusters", "def f():\n    from harness.errors import UserError\n", "clusters imports harness.errors"),
    ("clusters", "import jax.numpy as jnp\n", "clusters imports jax.numpy"),
    ("kernels", "from clusters import flops\n", "kernels imports clusters"),
    ("kernels", "def g():\n    import harness.device\n", "kernels imports harness.device"),
    ("harness", "from clusters.train import _layer_parts\n", "imports private _layer_parts of clusters.train"),
    ("clusters", "from .train import _layer_parts\n", "imports private _layer_parts of clusters.train"),
])
def test_the_checker_catches_a_planted_violation(tmp_path, package, code, expected):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("data", "__pycache__"))
    assert violations(tmp_path) == []
    (tmp_path / package / "planted.py").write_text(code)
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0] and "planted.py" in found[0]
