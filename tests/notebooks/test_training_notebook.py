"""The README's notebook example, run by nbclient on an ipykernel: watch and progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).with_name("training_under_watch.ipynb")
README = Path(__file__).resolve().parents[2] / "README.md"


def stdout_of(cell: Any) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def test_a_training_cell_under_watch_reports_its_progress_and_its_end(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute()  # raises CellExecutionError, with the cell's traceback, on a failure

    printed = [stdout_of(cell) for cell in notebook.cells if cell.cell_type == "code"]
    assert printed[2].strip().splitlines() == [
        "\N{WHITE HEAVY CHECK MARK} epochs: done, 30/30",
        "result: 0.0424",
    ]
    assert printed[3].strip() == "ValueError: validation set is empty"
    assert printed[4].strip() == "closed"


def test_the_notebooks_training_cell_is_the_readmes_example_as_written() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("In a notebook, a training cell under `watch`", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]

    assert cells[1].strip() == example.strip()
