"""Shared ending of the benchmark scripts: a load-average line, print, optional file."""

import os


def emit(lines, out=None):
    """Print the report ``lines`` (plus the load average, to judge noise) and write ``out``."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    text = "\n".join(list(lines) + [f"load average at the end: {load}"]) + "\n"
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
