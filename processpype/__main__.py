"""``python -m processpype``: the ``processpype-notify`` command line."""

from __future__ import annotations

import sys

from processpype.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m processpype"))
