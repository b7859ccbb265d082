"""The package's rooms import one way: each room only from rooms below it (docs/architecture.md, Layout), never in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import koembed

# Lower number = lower floor. A module may import koembed modules of its own room or of a lower floor.
FLOORS = {
    "_lazy": 0, "errors": 0, "version": 0, "progress": 0, "files": 1, "ranking": 1,
    "data": 2, "lexical": 2, "models": 3, "encoding": 4, "retrieval": 5,
    "evaluation": 6, "index": 6, "training": 7, "server": 8, "cli": 9, "__main__": 10, "__init__": 10,
}
PACKAGE = Path(koembed.__file__).parent


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> list[tuple[str, str, int]]:
    """(importing module's path, imported koembed module, line) for every ``from koembed... import`` at any depth,
    TYPE_CHECKING blocks included: a type-only arrow back up is still an arrow."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "koembed":
                found.append((str(path.relative_to(PACKAGE)), node.module, node.lineno))
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(PACKAGE)), a.name, node.lineno) for a in node.names
                          if a.name.split(".")[0] == "koembed"]
    return found


def test_every_room_has_a_floor():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert rooms <= set(FLOORS), f"rooms without a floor in this test: {sorted(rooms - set(FLOORS))}"


def _upward(imports: list[tuple[str, str, int]]) -> list[str]:
    out = []
    for path, module, line in imports:
        own, target = path.split("/")[0].removesuffix(".py"), _room(module)
        if own != target and FLOORS[target] > FLOORS[own]:
            out.append(f"{path}:{line} imports {module} ({own} floor {FLOORS[own]} -> {target} floor {FLOORS[target]})")
    return out


def test_imports_never_run_back_up():
    imports = _imports()
    assert len(imports) > 100  # the parse found the package's imports
    upward = _upward(imports)
    assert not upward, "\n".join(upward)


def test_an_arrow_back_up_is_reported():
    assert _upward([("models/loading.py", "koembed.index.build", 3), ("index/build.py", "koembed.models", 4)]) == [
        "models/loading.py:3 imports koembed.index.build (models floor 3 -> index floor 6)"]


def test_no_test_module_imports_another():
    """Shared helpers live in tests/helpers.py and fixtures in tests/conftest.py (issue 32): a test module that
    imports another runs that module's fixtures and state in a second place."""
    import re
    from pathlib import Path

    folder = Path(__file__).resolve().parent
    offenders = [p.name for p in folder.rglob("test_*.py")
                 if re.search(r"^\s*(from|import) tests\.test_", p.read_text(encoding="utf-8"), re.M)]
    assert offenders == []
