"""How fast `solodesk --help` answers, beside a bare interpreter start as the reference.

Run: .venv/bin/python bench/startup.py [--runs N]
Target: under one second.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _timed(command: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    """Time the command line's start-up and print it beside the interpreter's own."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    cases = {
        "python -c pass (reference)": [sys.executable, "-c", "pass"],
        "solodesk --help": [str(BIN / "solodesk"), "--help"],
        "solodesk ingest --help": [str(BIN / "solodesk"), "ingest", "--help"],
        "solodesk data list --help": [str(BIN / "solodesk"), "data", "list", "--help"],
    }
    results = {name: _timed(cmd, runs) for name, cmd in cases.items()}
    reference = statistics.median(results["python -c pass (reference)"])
    print(f"{'command':<30} {'median s':>9} {'max s':>7} {'x python':>9}  target")
    for name, seconds in results.items():
        median = statistics.median(seconds)
        verdict = "" if "reference" in name else ("< 1 s met" if max(seconds) < 1 else "MISSED")
        print(f"{name:<30} {median:9.3f} {max(seconds):7.3f} {median / reference:9.1f}  {verdict}")


if __name__ == "__main__":
    main()
