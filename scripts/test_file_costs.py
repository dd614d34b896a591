"""Rewrite tests/file_costs.txt from a test run's ``--durations=0`` report, so that `./dev.sh test` hands
the longest test files out first (tests/conftest.py orders them; see there why).

    ./dev.sh test -q --durations=0 | tee /tmp/run.txt
    .venv/bin/python scripts/test_file_costs.py /tmp/run.txt

Only the order matters, so figures from a loaded machine serve as well as quiet ones. Use a run of the
whole suite: a test file the report does not name is listed as costing nothing."""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(tests/[^:\s]+\.py)::")
HEADER = """\
# Seconds each test file took (setup + call + teardown of its tests, one worker) in a run of the whole
# suite: tests/conftest.py starts the long ones first. Refresh with scripts/test_file_costs.py; a file
# not listed here starts early (it counts as long) until the next refresh.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="pytest output with --durations=0")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "file_costs.txt")
    args = ap.parse_args()
    costs: dict[str, float] = defaultdict(float)
    for line in args.report.read_text().splitlines():
        m = LINE.match(line)
        if m:
            costs[m.group(3)] += float(m.group(1))
    if not costs:
        ap.error(f"{args.report}: no `--durations=0` lines in it")
    # a file whose every phase took under 5 ms is not in the report (pytest hides those): it costs nothing
    for path in (ROOT / "tests").glob("test_*.py"):
        costs.setdefault(f"tests/{path.name}", 0.0)
    rows = sorted(costs.items(), key=lambda kv: (-kv[1], kv[0]))
    args.out.write_text(HEADER + "".join(f"{s:8.1f} {name}\n" for name, s in rows))
    print(f"{args.out}: {len(rows)} files, {sum(costs.values()):.0f} s in all")


if __name__ == "__main__":
    main()
