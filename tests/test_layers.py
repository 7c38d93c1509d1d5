"""The packages form layers: pretrained <- datamodules <- lightning_modules <- callbacks. A package imports only
those below it (the update rules' own independence from the LightningModule is in test_protocol.py)."""

from __future__ import annotations

import ast

from tests.helpers import REPO

LAYERS = ["pretrained", "datamodules", "lightning_modules", "callbacks"]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level project packages imported anywhere in `package` (function-local imports included)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_each_package_imports_only_the_layers_below() -> None:
    for level, package in enumerate(LAYERS):
        above = {p: files for p, files in imported_packages(package).items() if LAYERS.index(p) > level}
        assert not above, f"{package} imports a layer above it: {above}"
