"""No module keeps a private helper that nothing calls: dead code is deleted, not kept."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "pipelines", "models", "feature_store", "execution", "services", "flows", "app")


def _sources() -> dict[Path, str]:
    return {
        path: path.read_text()
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def _private_functions(source: str) -> list[str]:
    tree = ast.parse(source)
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("_")
        and not node.name.startswith("__")
    ]


def test_private_module_functions_each_used_somewhere() -> None:
    # Arrange
    sources = _sources()
    words = Counter(re.findall(r"\w+", "\n".join(sources.values())))

    # Act
    unused = [
        f"{path.relative_to(REPO)}: {name}"
        for path, source in sources.items()
        for name in _private_functions(source)
        if words[name] < 2
    ]

    # Assert
    assert not unused, f"private functions nothing uses (delete them): {unused}"


def test_dead_code_check_finds_an_unused_helper() -> None:
    # Arrange
    source = "def _used():\n    return 1\n\ndef _dead():\n    return 2\n\nx = _used()\n"

    # Act
    names = _private_functions(source)
    dead = [n for n in names if len(re.findall(rf"\b{n}\b", source)) < 2]

    # Assert
    assert names == ["_used", "_dead"]
    assert dead == ["_dead"]
