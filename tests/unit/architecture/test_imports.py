"""The house rules of the package, read from the source with ``ast``: no import cycles (at run
time or under ``TYPE_CHECKING``, imports inside functions included), other packages reach a
subsystem only through its face (its ``__init__``), each package imports only the packages
below it, and the simulator stands on its own."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "gateway"
KERNEL = frozenset({"gateway", "gateway.errors", "gateway.model", "gateway.secret",
                    "gateway.cli", "gateway.__main__"})
# what each subsystem may import besides the kernel and itself (the floors of the house)
ALLOWED: dict[str, frozenset[str]] = {
    "support": frozenset(),
    "simulator": frozenset({"support"}),
    "config": frozenset({"support"}),
    "core": frozenset({"config"}),
    "meter": frozenset({"config", "support"}),
    "history": frozenset({"config", "core", "meter", "support"}),
    "alerts": frozenset({"config", "core", "meter", "support"}),
    "commands": frozenset({"config", "meter"}),
    "energy": frozenset({"config", "core", "history", "meter", "support"}),
    "mqtt": frozenset({"config", "core", "commands", "energy", "history", "meter", "support"}),
    "modbus": frozenset({"config", "core", "commands", "energy", "meter", "support"}),
    "sparkplug": frozenset({"config", "core", "commands", "energy", "history", "meter", "mqtt",
                            "support"}),
    "observe": frozenset({"config", "core", "meter", "support"}),
    "runtime": frozenset({"config", "core", "commands", "energy", "history", "alerts", "meter",
                          "mqtt", "modbus", "sparkplug", "observe", "support", "simulator"}),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def exported(face: Path) -> frozenset[str]:
    """The names a package's face lists in ``__all__``."""
    for node in ast.parse(face.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return frozenset(ast.literal_eval(node.value))
    return frozenset()


def imports(path: Path, known: set[str]) -> Iterator[str]:
    """Every gateway module ``path`` imports, wherever the import statement stands. A name
    that a package's face exports (``from gateway.config import shard``) counts as an import
    of the face; any other ``from package import module`` as one of that module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            face = PACKAGE.parent.joinpath(*base.split("."), "__init__.py")
            public = exported(face) if face.is_file() else frozenset()
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known
                     and a.name not in public else base for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("gateway"):
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                if name in known and name != me:
                    yield name


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {m: set(imports(p, known)) for m, p in found.items()}


def subsystem(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_reader_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    known = set(modules())
    probe = PACKAGE / "runtime" / "app.py"
    found = set(imports(probe, known))
    assert "gateway.observe" in found  # a top-level import of a face
    assert any(m.startswith("gateway.config") for m in found)


def test_no_import_cycles_between_modules() -> None:
    assert find_cycle(graph()) is None


def test_no_import_cycles_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for module, targets in graph().items():
        mine = subsystem(module)
        if mine is None:
            continue
        edges.setdefault(mine, set()).update(
            t for t in map(subsystem, targets) if t is not None and t != mine)
    assert find_cycle(edges) is None


def test_other_packages_import_only_a_subsystems_face() -> None:
    wrong = []
    for module, targets in graph().items():
        mine = subsystem(module)
        for target in targets:
            theirs = subsystem(target)
            if theirs is not None and theirs != mine and target != f"gateway.{theirs}":
                wrong.append(f"{module} -> {target}")
    assert wrong == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_lies_below_it(package: str) -> None:
    wrong = []
    for module, targets in graph().items():
        if subsystem(module) != package:
            continue
        for target in targets:
            theirs = subsystem(target)
            if theirs is None:
                assert target in KERNEL, f"{module} -> {target}"
                continue
            if theirs != package and theirs not in ALLOWED[package]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_every_subsystem_has_a_rule() -> None:
    found = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert found <= set(ALLOWED)


def test_the_simulator_imports_nothing_of_the_gateways_runtime_outputs_or_meter_side() -> None:
    forbidden = ("runtime", "mqtt", "modbus", "sparkplug", "core", "commands", "history",
                 "observe", "meter", "config")
    wrong = [f"{m} -> {t}" for m, targets in graph().items() if subsystem(m) == "simulator"
             for t in targets if subsystem(t) in forbidden]
    assert wrong == []


def test_the_kernel_imports_no_subsystem_at_import_time() -> None:
    """cli.py dispatches by module name (lazily, by string); errors, model and secret stand
    alone, so that every subsystem may use them."""
    for module, targets in graph().items():
        if module in KERNEL:
            assert {t for t in targets if subsystem(t)} == set(), module
