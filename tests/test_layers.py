"""The layer rules of DESIGN.md, checked on the source: data flows down, one write path.

Imports are read with ``ast`` (relative ones resolved), so a rule breaks the build the
moment a module reaches past its layer, whatever the tests exercise.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cvmfs_publisher", "unpacker")
CONCRETE_STORAGE = ("cvmfs_publisher.storage.local", "cvmfs_publisher.storage.s3",
                    "cvmfs_publisher.storage.http")
ABOVE_FORMAT = ("cvmfs_publisher.engine", "cvmfs_publisher.storage", "cvmfs_publisher.backends",
                "cvmfs_publisher.cli", "cvmfs_publisher.publisher",
                "cvmfs_publisher.repositories", "cvmfs_publisher.config", "unpacker")
FRONT_ENDS = ("cvmfs_publisher.cli", "cvmfs_publisher.backends", "cvmfs_publisher.repositories",
              "cvmfs_publisher.config", "unpacker")

# module prefix -> import prefixes it must never use
FORBIDDEN = {
    "cvmfs_publisher.cvmfs": ABOVE_FORMAT,
    "cvmfs_publisher.storage": tuple(p for p in ABOVE_FORMAT
                                     if p != "cvmfs_publisher.storage"),
    "cvmfs_publisher.engine": FRONT_ENDS,
    "cvmfs_publisher.publisher": ("cvmfs_publisher.engine", *FRONT_ENDS),
    "cvmfs_publisher.entries": ("cvmfs_publisher.engine", "cvmfs_publisher.storage",
                                *FRONT_ENDS),
    "cvmfs_publisher.sources": ("cvmfs_publisher.engine", "cvmfs_publisher.storage",
                                *FRONT_ENDS),
    "cvmfs_publisher.backends.cvmfs_server": ("cvmfs_publisher.engine",
                                              "cvmfs_publisher.storage", "cvmfs_publisher.cli"),
    "unpacker": ("cvmfs_publisher.engine", "cvmfs_publisher.storage",
                 "cvmfs_publisher.backends", "cvmfs_publisher.cli",
                 "cvmfs_publisher.repositories"),
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


def imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    result = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            result.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            result.add(base)
            result.update(f"{base}.{alias.name}" for alias in node.names)
    return result


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


ALL = modules()


def test_the_rules_see_the_tree() -> None:
    names = {name for name, _ in ALL}
    assert {"cvmfs_publisher.engine.transaction", "unpacker.sync",
            "cvmfs_publisher.backends.cvmfs_server.session"} <= names
    assert "cvmfs_publisher.engine.transaction" in imports(*next(
        m for m in ALL if m[0] == "cvmfs_publisher.backends.native"))


@pytest.mark.parametrize("name,path", ALL, ids=[name for name, _ in ALL])
def test_imports_flow_down(name: str, path: Path) -> None:
    used = imports(name, path)
    for owner, forbidden in FORBIDDEN.items():
        if within(name, owner):
            assert not [u for u in used if within(u, forbidden)], f"{name} reaches up"
    if not within(name, "cvmfs_publisher.storage"):
        assert not [u for u in used if within(u, CONCRETE_STORAGE)], \
            f"{name} names a concrete storage; use cvmfs_publisher.storage.open_storage"


@pytest.mark.parametrize("name,path", ALL, ids=[name for name, _ in ALL])
def test_only_the_engine_and_native_backend_open_native_transactions(name: str,
                                                                     path: Path) -> None:
    if within(name, ("cvmfs_publisher.engine", "cvmfs_publisher.backends.native")):
        return
    assert not [u for u in imports(name, path) if within(u, "cvmfs_publisher.engine.transaction")]
    calls = [node for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "transaction"]
    assert not calls, f"{name} opens a native transaction; use Publisher.session()"


@pytest.mark.parametrize("name,path", ALL, ids=[name for name, _ in ALL])
def test_only_the_cli_prints(name: str, path: Path) -> None:
    if within(name, "cvmfs_publisher.cli"):
        return
    tree = ast.parse(path.read_text())
    prints = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
              and isinstance(node.func, ast.Name) and node.func.id == "print"]
    assert not prints, f"{name} prints (lines {prints}); return values or log instead"
    assert not [u for u in imports(name, path) if within(u, "rich")]
