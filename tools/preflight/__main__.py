"""``python -m tools.preflight``: can this account take the app? (tools/preflight/cli.py)."""

from tools.preflight.cli import main

raise SystemExit(main())
