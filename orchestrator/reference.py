"""`python -m orchestrator.reference`: the grid.yaml reference, generated from the config schema.

Every key's meaning is its field's docstring in config.py; this prints them as Markdown
tables, one per config node, with types, defaults and the registries' names. docs/grid.md
is its output, and tests/unit/test_reference.py fails when the two differ
(regenerate: `python -m orchestrator.reference > docs/grid.md`).
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

from orchestrator import catalog
from orchestrator.config import GridConfig, _model_of

INTRO = """# grid.yaml reference

Generated from the config schema (`orchestrator/config.py`) by `python -m orchestrator.reference`;
do not edit by hand. Unknown keys are errors (with a "did you mean"); any key can be overridden
on the command line: `--set train.epochs=3 --set models.0.name=resnet34`. Relative paths are
relative to the directory the command runs in. Examples: `experiments/`.
"""


def reference() -> str:
    """The whole reference as Markdown."""
    parts = [INTRO]
    for path, model in _nodes(GridConfig, ""):
        parts.append(f"## `{path}`\n" if path else "## top level\n")
        if model.__doc__ and model.__doc__ != BaseModel.__doc__ and path:
            parts.append(" ".join(model.__doc__.split()) + "\n")
        parts.append(_table(model))
    parts.append(_names())
    return "\n".join(parts)


def _nodes(model: type[BaseModel], path: str) -> list[tuple[str, type[BaseModel]]]:
    """(dotted path, node) of `model` and every config node under it, depth first."""
    found = [(path, model)]
    for name, field in model.model_fields.items():
        child = _model_of(field.annotation)
        if child is None or child in (GridConfig,):
            continue
        origin = _container(field.annotation)
        suffix = {list: "[]", dict: ".<name>"}.get(origin, "")
        found += _nodes(child, f"{path}.{field.alias or name}{suffix}".lstrip("."))
    return found


def _container(annotation: Any) -> type | None:
    """list or dict when the annotation (or an arm of its union) is one, else None."""
    origin = get_origin(annotation)
    if origin in (list, dict):
        return origin
    if origin in (Union, types.UnionType):
        return next((c for arg in get_args(annotation) if (c := _container(arg))), None)
    return None


def _table(model: type[BaseModel]) -> str:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{field.alias or name}` | {_type(field.annotation, field.metadata)} | {_default(field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def _type(annotation: Any, metadata: list[Any] = ()) -> str:
    """The annotation for people: `int >= 1`, `auto \\| off`, `list of mapping`, with `null` where None is allowed."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        text = " \\| ".join(f"`{a}`" for a in args)
    elif origin in (Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        text = " \\| ".join(_type(a) for a in arms) + (" \\| `null`" if len(arms) < len(args) else "")
    elif origin is list:
        text = f"list of {_type(args[0])}"
    elif origin is dict:
        text = f"mapping of name to {_type(args[1])}"
    elif origin is tuple:
        text = f"[{', '.join(_type(a) for a in args)}]"
    elif hasattr(annotation, "__metadata__"):  # Annotated[int, Field(ge=8)]
        return _type(args[0], [m for meta in annotation.__metadata__ for m in getattr(meta, "metadata", [meta])])
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "mapping (below)"
    else:
        text = {Path: "path", Any: "any"}.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = {annotated_types.Ge: ">=", annotated_types.Gt: ">", annotated_types.Le: "<=", annotated_types.Lt: "<"}
    limits = [f"{sign} {getattr(m, kind.__name__.lower())}" for m in metadata for kind, sign in bounds.items()
              if isinstance(m, kind)]
    return " ".join([text, *limits])


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(below)"
    return f"`{json.dumps(to_jsonable_python(value))}`"


def _names() -> str:
    """The registries' names: what `source`, `optimizer.name`, ... accept."""
    lists = {"data.source": catalog.SOURCES, "train.optimizer.name": catalog.OPTIMIZERS,
             "train.scheduler.name": catalog.LR_SCHEDULERS, "train.loss.name": catalog.LOSSES,
             "models[].heads": catalog.HEADS}
    lines = ["## Names\n", "| key | accepts |", "| --- | --- |"]
    lines += [f"| `{key}` | {', '.join(f'`{n}`' for n in names)} |" for key, names in lists.items()]
    lines += ["", "Optimizer defaults where `lr` / `weight_decay` are null:", "",
              "| optimizer | lr | weight_decay |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {d.lr:g} | {d.weight_decay:g} |" for name, d in catalog.OPTIMIZERS.items()]
    lines += ["", "Augmentation presets (`train.augment`; the same table is in the error a misspelt one gets):", "",
              "| preset | what it does |", "| --- | --- |"]
    lines += [f"| `{name}` | {note} |" for name, note in catalog.AUGMENT.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
