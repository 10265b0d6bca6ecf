"""``python -m benchmarks.fleet [--hosts N] [--quick] [--json PATH]``: figure 13 alone.

Prints the table of the four scenarios and the targets, and the JSON when asked.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import report, scenarios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=None, help="fleet size (R scales with it)")
    parser.add_argument("--quick", action="store_true", help="1,000 hosts, one steady day")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", default=None, help="also write the figure here")
    args = parser.parse_args(argv)
    fig = scenarios.run_all(**scenarios.size(args.quick, args.hosts), seed=args.seed)
    print(report.table(fig))
    print()
    for row in report.targets(fig):
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        print(f"{row['target']:<38}{row['value']!s:>28}  {row['goal']:<28}{met}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(fig, out, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
