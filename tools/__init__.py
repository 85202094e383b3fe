"""Operator tools that run against a deployment (or the sandbox), not inside it."""
