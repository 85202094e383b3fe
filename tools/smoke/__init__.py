"""The post-deploy smoke test (``python -m tools.smoke``; tools/smoke/cli.py)."""
