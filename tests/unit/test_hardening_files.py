"""CSV cells that a spreadsheet would run as formulas are neutralised; numbers are not."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from trajectory.files import atomic_path, neutralise_cell, neutralise_table

ATTACKS = ["=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "+1+HYPERLINK(\"http://x\")",
           "-2+3", "\tTAB", "\rCR"]


@pytest.mark.parametrize("cell", ATTACKS)
def test_a_formula_cell_gets_a_leading_quote(cell: str) -> None:
    assert neutralise_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["zara01", "", "a=b", "1.5", "'=already"])
def test_plain_text_is_left_alone(cell: str) -> None:
    assert neutralise_cell(cell) == cell


def test_a_table_keeps_numbers_and_neutralises_every_text_column() -> None:
    table = pa.table({
        "scene": ATTACKS + ["ok"],
        "x": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0, -7.0],
        "tag": pa.array(["-a", "b", None, "=c", "d", "e", "f"]).dictionary_encode(),
    })
    out = neutralise_table(table)
    assert out.column("scene").to_pylist() == ["'" + a for a in ATTACKS] + ["ok"]
    assert out.column("x").to_pylist() == table.column("x").to_pylist()
    assert out.column("tag").to_pylist() == ["'-a", "b", None, "'=c", "d", "e", "f"]


def test_atomic_path_leaves_nothing_behind_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]
