"""Import time of processpype against a bare interpreter start (one subprocess per run)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from benchmarks._common import Row, Sample, print_rows, timed

STATEMENTS = {
    "import processpype": "import processpype",
    "import processpype.communications": "import processpype.communications",
    "from processpype import Notifier": "from processpype import Notifier",
}


def _run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True)


def _interleaved(codes: list[str], repeats: int) -> list[Sample]:
    # Interleave the variants so a burst of machine noise hits them all alike.
    samples = [Sample([]) for _ in codes]
    for _ in range(repeats):
        for sample, code in zip(samples, codes, strict=True):
            sample.values.append(timed(lambda code=code: _run_python(code)))  # type: ignore[misc]
    return samples


def run(size: str = "full") -> list[dict[str, Any]]:
    """Rows: each import's wall time against ``python -c pass`` measured in the same run."""
    repeats = 3 if size == "tiny" else 15
    codes = ["pass", *STATEMENTS.values()]
    bare, *imports = _interleaved(codes, repeats)
    rows = []
    for (label, _), sample in zip(STATEMENTS.items(), imports, strict=True):
        ratio = sample.median / bare.median
        lazy = label != "from processpype import Notifier"
        target = "≤ 1.5x bare start" if lazy else "informational (loads pydantic, eventspype)"
        rows.append(
            Row(
                benchmark=label,
                figure=sample.median * 1000,
                unit="ms",
                baselines={"bare interpreter start (ms)": bare.median * 1000},
                ratios={"vs bare start": ratio},
                target=target,
                met=ratio <= 1.5 if lazy else True,
                spread=sample.spread_text(),
            ).as_dict()
        )
    return rows


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
