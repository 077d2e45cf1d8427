"""Every public exception class the package defines is rooted in ``errors.VisionPreferError`` (so the CLI
prints it on one line), and errors.py lists it in its tree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from visionprefer import errors

PACKAGE = Path(errors.__file__).resolve().parent


def _exception_classes() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = [ast.unparse(b) for b in node.bases]
                if any(
                    b.endswith(
                        (
                            "Error",
                            "Exception",
                            "Exceeded",
                            "Failed",
                            "TimedOut",
                            "Answer",
                            "Unreachable",
                            "Large",
                        )
                    )
                    for b in bases
                ):
                    found.append((module, node.name))
    return found


def test_every_public_exception_is_rooted_in_the_errors_tree():
    classes = _exception_classes()
    assert len(classes) >= 12  # the scan finds them (errors.py's own, and any defined elsewhere)
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, errors.VisionPreferError), f"{module}.{name}"
        assert name in errors.__doc__, f"{name} is not in the tree of errors.py's docstring"
