"""Check the built sdist and wheel: the package, py.typed and entry points, no tests."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

REQUIRED_IN_WHEEL = [
    "processpype/__init__.py",
    "processpype/py.typed",
    "processpype/__init__.pyi",
    "processpype/communications/__init__.pyi",
    "processpype/communications/outbox/__init__.pyi",
    "processpype/config/__init__.pyi",
    "processpype/testing/__init__.pyi",
    "processpype/communications/dispatcher.py",
    "processpype/config/models.py",
    "processpype/testing/__init__.py",
    "processpype/testing/plugin.py",
]
REQUIRED_ENTRY_POINTS = [
    "processpype-notify = processpype.cli:main",
    "processpype = processpype.testing.plugin",
    "recording = processpype.testing.recording:RecordingCommunicator",
]


def main(dist: Path) -> int:
    problems: list[str] = []
    wheels = sorted(dist.glob("processpype-*.whl"))
    sdists = sorted(dist.glob("processpype-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
        return 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        problems += [f"wheel lacks {n}" for n in REQUIRED_IN_WHEEL if n not in names]
        problems += [f"wheel ships {n}" for n in names if n.startswith(("tests/", "benchmarks/"))]
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        text = wheel.read(entry_points).decode() if entry_points else ""
        problems += [
            f"wheel lacks entry point {e!r}" for e in REQUIRED_ENTRY_POINTS if e not in text
        ]
    with tarfile.open(sdists[0]) as sdist:
        members = [m.split("/", 1)[1] for m in sdist.getnames() if "/" in m]
        for required in (
            "processpype/py.typed",
            "processpype/__init__.pyi",
            "README.md",
            "CHANGELOG.md",
            "setup.cfg",
        ):
            if required not in members:
                problems.append(f"sdist lacks {required}")
    for problem in problems:
        print(problem)
    print(
        f"checked {wheels[0].name} ({len(names)} files) and {sdists[0].name}: "
        f"{'OK' if not problems else f'{len(problems)} problems'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
