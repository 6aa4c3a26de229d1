"""The core never imports streamlit; pages stay thin."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_streamlit():
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "cnnlab").rglob("*.py")
        if "streamlit" in _imported_modules(path)
    ]
    assert offenders == [], f"cnnlab/ must not import streamlit: {offenders}"


def test_the_check_sees_an_import(tmp_path):
    sample = tmp_path / "bad.py"
    sample.write_text("def f():\n    import streamlit as st\n")
    assert "streamlit" in _imported_modules(sample)
