"""``python -m tools.smoke``: the post-deploy check (see tools/smoke/cli.py)."""

from tools.smoke.cli import main

raise SystemExit(main())
