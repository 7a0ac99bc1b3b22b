"""The grid.yaml reference is generated from the schema, and every key has a meaning."""

from __future__ import annotations

from orchestrator.config import GridConfig, _model_of
from orchestrator.reference import reference
from tests.conftest import REPO


def test_docs_grid_md_is_what_the_schema_generates():
    assert (REPO / "docs" / "grid.md").read_text() == reference(), \
        "docs/grid.md drifted from the schema: python -m orchestrator.reference > docs/grid.md"


def test_every_key_says_what_it_means():
    missing, todo, seen = [], [GridConfig], set()
    while todo:
        model = todo.pop()
        seen.add(model)
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            child = _model_of(field.annotation)
            if child is not None and child not in seen:
                todo.append(child)
    assert not missing, f"give these fields a docstring (the line after them) in config.py: {missing}"
