"""The package's shape: no import circle, and the driver's conventions each defined once.

Imports are read from the source (module level and inside functions alike; a
function-level import is still a dependency). Imports under `if TYPE_CHECKING:`
are left out: they are types for readers and checkers, never run.
"""

from __future__ import annotations

import ast
import re
import subprocess

from tests.conftest import REPO

PACKAGE = REPO / "orchestrator"


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str) -> set[str]:
    """The package modules `name` imports (from x import y: the module x.y when it is one, else x)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_sees_lazy_imports():
    assert "orchestrator.train.loop" in GRAPH["orchestrator.search.trainable"]  # imported inside a function


def test_no_import_circle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_no_back_and_forth_between_subpackages():
    """Package level: no two subpackages import each other; data and train know none of the driver-side ones."""
    def package(module: str) -> str:
        return module.split(".")[1] if module.count(".") >= 2 else module

    edges = {(package(a), package(b)) for a, deps in GRAPH.items() for b in deps if package(a) != package(b)}
    assert not {(a, b) for a, b in edges if (b, a) in edges}, edges
    for low in ("data", "train"):
        assert not {b for a, b in edges if a == low and b in ("search", "tracking", "ensemble", "driver")}, low
    # the driver runs a grid with the others' parts (the ensemble's choice of configs to refit among them); none
    # of them reaches back into it (the ensemble reads the leaderboard table through the leaf module board.py)
    assert not {a for a, b in edges if b == "driver" and a != "orchestrator.run"}, edges


def _definitions(pattern: str) -> list[str]:
    """`path:line` of every line in the package that matches `pattern`."""
    out = subprocess.run(["grep", "-rnE", pattern, str(PACKAGE), "--include=*.py"], capture_output=True, text=True, check=False)
    return [line.split(":", 2)[0].removeprefix(f"{REPO}/") for line in out.stdout.splitlines()]


def test_storage_paths_are_formatted_in_one_module():
    for piece in (r'"[^"]*/trials', r'"[^"]*epoch_\{', r'"[^"]*/tune"', r'[/"]data/folds\.parquet', r'[/"]data/test\.parquet'):
        assert set(_definitions(piece)) <= {"orchestrator/layout.py"}, piece


def test_report_keys_and_statuses_are_defined_once():
    """Keys only the report has (val_acc and the like are also what a grid's scheduler.metric says; "lr" and
    "best_epoch" are also an optimizer's and a checkpoint state's keys)."""
    keys = r'"(train_loss|epoch_time_s|images_per_s|data_wait_s|checkpoint_s|checkpoint_write_s|trial_done|worker_node|replay)"'
    assert set(_definitions(keys)) <= {"orchestrator/protocol.py"}
    statuses = r'"(PENDING|RUNNING|PAUSED|FINISHED|KILLED|FAILED|INTERRUPTED|ABANDONED)"'
    assert set(_definitions(statuses)) <= {"orchestrator/protocol.py"}


def test_fold_asha_is_not_recognised_by_duck_typing():
    assert not _definitions(r"hasattr\([a-z_]+, ?\"pausing\"\)")
    assert not [m for m, p in MODULES.items() if re.search(r"import_module\(", p.read_text())]
