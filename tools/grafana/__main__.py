"""`python -m tools.grafana [--check]`: regenerate the dashboards (or, with --check, exit
1 when the committed files differ from the definition)."""

from __future__ import annotations

import sys

from tools.grafana.build import render_all, write_all


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = [p for p, t in render_all().items() if not p.exists() or p.read_text("utf-8") != t]
        for p in stale:
            print(f"out of date: {p} (run python -m tools.grafana)", file=sys.stderr)
        return 1 if stale else 0
    for p in write_all():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
