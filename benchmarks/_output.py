"""Shared ending of the benchmark scripts: a load-average line, print, optional file."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from recbole_hetcomp.atomic import write_text_atomically  # noqa: E402


def emit(lines, out=None):
    """Print the report ``lines`` (plus the load average, to judge noise) and write ``out``."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    text = "\n".join(list(lines) + [f"load average at the end: {load}"]) + "\n"
    print(text)
    if out:
        write_text_atomically(out, text)
