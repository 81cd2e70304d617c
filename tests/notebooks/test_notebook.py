"""A real notebook, run by nbclient on an ipykernel: the Notifier inside the kernel's loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).with_name("notifier_in_kernel.ipynb")


def stdout_of(cell: Any) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def test_the_notebook_sends_and_awaits_inside_the_kernels_running_loop(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute()  # raises CellExecutionError, with the cell's traceback, on a failure

    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    printed = [stdout_of(cell) for cell in code_cells]
    assert printed[1].strip() == "rec: delivered"  # the blocking send's report
    assert printed[2].strip() == "rec: delivered"  # the awaited asend's report
    assert printed[4].strip() == "deliveries: 23"
    assert printed[5].strip() == "attached: figure.png image/png"  # a figure as a PNG
    # The console backend prints from the notifier's thread, in the sender's contextvars:
    # its lines show under the cell that sent them, not the one that made the notifier.
    assert printed[6] == ""
    assert printed[7] == "[INFO] default printed under the sending cell\n"
    assert printed[8] == "[INFO] default and under this one\n"
    assert printed[9].strip() == "closed"
