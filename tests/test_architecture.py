"""The layers README's Architecture section promises, checked on the source: imports only point down, no
two modules import each other (directly or round a longer circle), and the CLI answers --help without torch.

Every import statement counts, also the ones inside functions: a lazy import still ties two modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# import root -> source folder (pyproject's package-dir)
ROOTS = {
    "canvas": REPO / "canvas",
    "canvas.curation": REPO / "curation",
    "canvas.pipelines": REPO / "pipelines",
    "canvas.labeling": REPO / "labeling",
    "canvas.rlhf": REPO / "rlhf",
}
# Lower numbers are lower layers. A module may import its own package and any lower layer.
LAYERS = {
    "canvas.core": 0,
    "canvas.curation": 1,
    "canvas.labeling": 1,
    "canvas.rlhf": 1,
    "canvas.pipelines": 2,
    "canvas.loop": 3,  # the demo loop: runs every stage's entry point
    "canvas.cli": 4,  # the commands, the demo among them
    "canvas": 5,  # the root package itself (__init__, __main__ = the CLI)
}


def _modules() -> dict[str, Path]:
    found = {}
    for root, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            name = ".".join((root, *rel))
            if root == "canvas" and len(rel) > 0 and f"canvas.{rel[0]}" in ROOTS:
                continue
            found[name] = path
    return found


MODULES = _modules()


def _package_of(name: str) -> str:
    """The layer key a module belongs to (the longest LAYERS prefix)."""
    return max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len)


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that `name` imports anywhere in its body, resolved to modules (not packages' attributes)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_source_is_where_the_layers_expect_it():
    assert "canvas.core.errors" in MODULES and "canvas.curation.config" in MODULES, sorted(MODULES)[:20]
    assert all(_package_of(m) for m in MODULES)


def test_imports_only_point_down():
    wrong = []
    for name, targets in GRAPH.items():
        own = _package_of(name)
        for target in targets:
            other = _package_of(target)
            if other != own and LAYERS[other] >= LAYERS[own]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports that run sideways or up:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    # Tarjan's strongly connected components: any component with two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_every_package_folder_is_installed():
    """A package folder missing from pyproject's list would import here (from the checkout) but not installed."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert packages == listed


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["curate"],
        ["generate"],
        ["label", "push"],
        ["label", "server", "start"],
        ["train", "dpo"],
        ["train", "ddpo"],
        ["train", "sft"],
        ["train", "reward"],
        ["eval"],
        ["score"],
        ["index", "query"],
        ["index", "build"],
        ["subset"],
        ["models", "init"],
        ["data", "sample"],
        ["label", "server", "status"],
        ["label", "status"],
        ["demo"],
    ],
    ids=lambda c: " ".join(c) or "canvas",
)
def test_help_imports_no_torch(command):
    """`canvas ... --help` must stay instant: torch alone takes 1.5-3 s to import on these machines."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "canvas", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    heavy = sorted(imported & {"torch", "diffusers", "transformers", "open_clip", "apache_beam", "trl"})
    assert not heavy, f"`canvas {' '.join(command)} --help` imported {heavy}"
