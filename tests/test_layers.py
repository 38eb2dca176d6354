"""The house rule, checked from the source: each layer of loadgen imports only the layers below.

    generator    wire, mix, engine, stats, runner, display, ...  (servers.protocol, .runtime, .work)
    analysis     typed results, summary, expectations            (+ generator)
    harness      server handle, calibration, machine, pythons    (+ generator)
    views        figures, timeline drawing, report, compare      (+ analysis, generator)
    experiments  bench, timeline recording, demo, soak, ...      (+ harness, analysis, generator)
    __main__     the command line                                (everything)

Views never import the harness or an experiment (a results file from elsewhere can be drawn
with no server in sight); experiments write JSON and never draw. Every import counts, those
inside functions included, and the modules of loadgen form no cycle. Beside the rule, one size
limit: no function in loadgen/ or servers/ is longer than 60 lines (the tests aside).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

LOADGEN = ROOT / "loadgen"
ALLOWED: dict[str, set[str]] = {
    "generator": set(),
    "analysis": {"generator"},
    "harness": {"generator"},
    "views": {"analysis", "generator"},
    "experiments": {"harness", "analysis", "generator"},
    "__main__": {"generator", "analysis", "harness", "views", "experiments"},
}
# What of servers/ each layer may use: the shared contract, never a model module.
SERVERS_ALLOWED: dict[str, set[str]] = {
    "generator": {"servers.protocol", "servers.runtime", "servers.work"},
    **{layer: {"servers", "servers.protocol", "servers.work", "servers.tracing",
               "servers.interpreter"}
       for layer in ("analysis", "harness", "views", "experiments", "__main__")},
}  # fmt: skip


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__main__"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, anywhere in it, with relative imports resolved."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import mod`
    return found


def graph(root: Path) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return {m: {i for i in imports(p, m) if i in modules and i != m} | _servers(imports(p, m))
            for m, p in modules.items()}  # fmt: skip


def _servers(found: set[str]) -> set[str]:
    return {i for i in found if i == "servers" or i.startswith("servers.")}


def violations(edges: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in edges.items():
        layer = layer_of(module)
        if layer not in ALLOWED:
            problems.append(f"{module}: not in any layer ({', '.join(ALLOWED)})")
            continue
        for target in sorted(targets):
            if target.startswith("servers"):
                if not _servers_ok(layer, target):
                    problems.append(f"{module} imports {target}")
            elif target != "loadgen" and layer_of(target) not in {layer, *ALLOWED[layer]}:
                problems.append(f"{module} ({layer}) imports {target} ({layer_of(target)})")
    return problems + [f"cycle: {' -> '.join(c)}" for c in cycles(edges)]


def _servers_ok(layer: str, target: str) -> bool:
    # `from servers import MODELS` shows up as servers.MODELS: a name in servers, not a module
    if not (ROOT / f"{target.replace('.', '/')}.py").exists():
        target = target.rpartition(".")[0] or target
    return target in SERVERS_ALLOWED[layer]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle among loadgen's own modules, once each (depth-first search)."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(edges.get(module, ())):
            if target in path:
                found.append(path[path.index(target) :] + [target])
            elif target not in done and target in edges:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            visit(module, [module])
    return found


def test_every_layer_imports_only_the_layers_below_it():
    assert violations(graph(LOADGEN)) == []


def test_the_folders_are_the_layers():
    folders = {p.name for p in LOADGEN.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(ALLOWED) - {"__main__"}
    assert {p.name for p in LOADGEN.glob("*.py")} == {"__init__.py", "__main__.py"}


@pytest.mark.parametrize(
    "source, problem",
    [
        ("from loadgen.experiments import bench", "imports loadgen.experiments"),
        ("def draw():\n    from loadgen.harness.server import ServerProcess",
         "imports loadgen.harness.server"),
        ("import servers.threads", "imports servers.threads"),
        ("from loadgen.views import cycle_b", "cycle: loadgen.views.cycle_a"),
    ],
)  # fmt: skip
def test_the_rule_check_can_fail(tmp_path, source, problem):
    root = tmp_path / "loadgen"
    for layer in ALLOWED:
        if layer != "__main__":
            (root / layer).mkdir(parents=True)
            (root / layer / "__init__.py").write_text("")
    (root / "experiments" / "bench.py").write_text("")
    (root / "harness" / "server.py").write_text("")
    (root / "views" / "cycle_a.py").write_text(source)
    (root / "views" / "cycle_b.py").write_text("from loadgen.views import cycle_a")
    found = violations(graph(root))
    assert any(problem in line for line in found), found


LONGEST_FUNCTION = 60  # lines: a function a newcomer can read at once
SHORT = sorted([*LOADGEN.rglob("*.py"), *(ROOT / "servers").rglob("*.py")])


def long_functions(path: Path) -> list[str]:
    """Every function in ``path`` longer than LONGEST_FUNCTION lines, with its length."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.name}: {node.name} is {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION]  # type: ignore[operator]  # fmt: skip


@pytest.mark.parametrize("path", SHORT, ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_stay_short(path):
    assert long_functions(path) == []


def test_the_length_check_can_fail(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST_FUNCTION))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    assert long_functions(tmp_path / "long.py") == ["long.py: long is 61 lines"]
