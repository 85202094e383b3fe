"""The pre-deploy check of an account: quotas, opt-in regions, CDK bootstrap (cli.py)."""
