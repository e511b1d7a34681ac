"""`python -m stationd` is the `stationd` command."""

from stationd.cli import main

raise SystemExit(main())
