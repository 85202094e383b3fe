#!/usr/bin/env python3
"""A team's own CDK app on top of the chat project (installed as a dependency).

The team's app has its own ``stacks`` and ``clients`` packages and this ``app.py``, like many
CDK apps; the project is one package, ``multiregion_chat``, so nothing collides. ``cdk synth``
here synthesizes it (README.md: venv, ``pip install -r requirements.txt``, synth);
tests/infra/test_example_app.py runs those commands and applies the project's template checks
to what the synth writes.
"""

from __future__ import annotations

from aws_cdk import App

from stacks.team_chat import build

if __name__ == "__main__":
    app = App()
    build(app)
    app.synth()
