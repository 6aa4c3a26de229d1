"""The block table an editor shows: one flat row per block, and blocks back from rows."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.models.blocks import BLOCK_TYPES, Block


def table_columns() -> dict[str, dataclasses.Field]:
    """Every block field once (first declaration wins), in a readable order."""
    columns: dict[str, dataclasses.Field] = {}
    for cls in BLOCK_TYPES.values():
        for field in dataclasses.fields(cls):
            columns.setdefault(field.name, field)
    return columns


def blocks_to_rows(blocks: list[Block | dict]) -> list[dict[str, Any]]:
    """One flat row per block, every column present (None where a block has no field).

    ``kernels`` becomes text such as ``"1,3,5"`` so a table cell can hold it.
    """
    columns = table_columns()
    rows = []
    for block in blocks:
        data = block.to_dict() if isinstance(block, Block) else dict(block)
        row: dict[str, Any] = {"type": data.get("type")}
        for name in columns:
            value = data.get(name)
            if name == "kernels" and isinstance(value, (list, tuple)):
                value = ",".join(str(kernel) for kernel in value)
            row[name] = value
        rows.append(row)
    return rows


def rows_to_blocks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Block dicts from table rows: each row keeps only its type's fields.

    Empty cells take the field's default; a row with every cell empty (a row just
    added) is skipped. Values are checked later by :func:`block_from_dict`.
    """
    blocks = []
    for position, row in enumerate(rows, 1):
        values = {key: _cell(value) for key, value in row.items()}
        if all(value is None for value in values.values()):
            continue
        kind = values.get("type")
        if kind not in BLOCK_TYPES:
            raise CnnlabError(
                f"Block {position}: `type` must be one of {', '.join(BLOCK_TYPES)}. "
                f"Received: type={kind!r}"
            )
        block: dict[str, Any] = {"type": kind}
        for field in dataclasses.fields(BLOCK_TYPES[kind]):
            value = values.get(field.name)
            if value is None:
                continue
            if field.name == "kernels" and isinstance(value, str):
                value = _parse_kernels(value, position)
            elif (
                isinstance(field.default, int)
                and not isinstance(field.default, bool)
                and isinstance(value, float)
                and value.is_integer()
            ):
                value = int(value)  # table columns with gaps hold floats
            block[field.name] = value
        blocks.append(block)
    return blocks


def _cell(value: Any) -> Any:
    """A table cell as plain Python: NaN, NA and blank text become None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item())
    return value


def _parse_kernels(text: str, position: int) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise CnnlabError(
            f"Block {position} (gated): `kernels` must be whole numbers separated by commas, "
            f"e.g. 1,3,5. Received: kernels={text!r}"
        ) from None
