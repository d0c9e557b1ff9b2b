"""The domain imports only the standard library and msgspec (no adapters, no plugins)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import omniretail.domain

DOMAIN = Path(omniretail.domain.__file__).parent
ALLOWED_THIRD_PARTY = {"msgspec"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
    return roots


def offending(path: Path) -> list[str]:
    bad = []
    for name in imported_roots(path):
        root = name.split(".")[0]
        if name.startswith("omniretail.domain") or root == "__future__":
            continue
        if root in sys.stdlib_module_names or root in ALLOWED_THIRD_PARTY:
            continue
        bad.append(name)
    return bad


def test_domain_modules_import_only_stdlib_and_msgspec() -> None:
    files = sorted(DOMAIN.glob("*.py"))
    assert len(files) >= 8
    problems = {f.name: offending(f) for f in files if offending(f)}
    assert problems == {}


def test_the_check_catches_an_adapter_import(tmp_path: Path) -> None:
    bad = tmp_path / "leaky.py"
    bad.write_text("import sqlalchemy\nfrom litestar import get\nfrom omniretail.storage import tables\n")
    assert sorted(offending(bad)) == ["litestar", "omniretail.storage", "sqlalchemy"]


def test_core_never_imports_a_channel_plugin() -> None:
    core = Path(omniretail.domain.__file__).parent.parent
    for path in core.rglob("*.py"):
        for name in imported_roots(path):
            assert not name.startswith("omniretail_"), f"{path} imports plugin {name}"
