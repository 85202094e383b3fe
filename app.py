#!/usr/bin/env python3
"""CDK entry point: the ChatDeployment (one ChatRegionStack per configured region).

Run by the CDK CLI (``npx cdk synth``, see cdk.json). A bad context value
prints one line naming the key and exits 1, instead of a jsii stack trace; an
unacknowledged cdk-nag finding prints the validation report and exits 1; a
dependencies layer pip could not build (registry out of reach, cold cache)
prints one line naming the missing wheel and exits 1.

CDK's built-in "CloudFormation Validate" plugin (cfn-lint's rules compiled to
WebAssembly) is off for ``cdk synth``: building its engine and checking each
template cost about 60% of the synth's CPU time (measured with
``python -m bench.synth``), and ``make test`` already runs cfn-lint itself on
the 3- and 20-region templates (tests/infra/test_cfn_lint.py), with every
configured region, while the test suite's apps (tests/infra/helpers.py) keep
the built-in plugin on. ``CDK_VALIDATION=true cdk synth`` turns it on here too.
cdk-nag stays on for every synth.

Run as the app (``python3 app.py``), it also caps the young generation of the
jsii kernel's Node processes (``--max-semi-space-size=1``, through
``NODE_OPTIONS``, set before ``aws_cdk`` starts them): about 60 MiB less peak
memory, no measurable CPU cost (``python -m bench.synth``).
"""

from __future__ import annotations

import os
import sys

JSII_NODE_OPTIONS = "--max-semi-space-size=1"


def _tune_jsii_node() -> None:
    """Add ``JSII_NODE_OPTIONS`` to ``NODE_OPTIONS`` unless a semi-space size is set already."""
    current = os.environ.get("NODE_OPTIONS", "")
    if "--max-semi-space-size" not in current:
        os.environ["NODE_OPTIONS"] = f"{current} {JSII_NODE_OPTIONS}".strip()


if __name__ == "__main__":
    _tune_jsii_node()  # before the imports below start the jsii kernel

from aws_cdk import App  # noqa: E402

from multiregion_chat import ChatConfig, ChatDeployment, ConfigError  # noqa: E402
from multiregion_chat.infra.bundling import LAYER_BUILD_FAILED  # noqa: E402


def build_app(app: App) -> ChatDeployment:
    """The chat app in every region of ``app``'s context (cdk.json, ``-c``), with cdk-nag.

    The same public API, from the package root, a team's own app uses (docs/extending.md).
    """
    return ChatDeployment(app, config=ChatConfig.from_context(app.node))


def builtin_validation() -> bool:
    """Whether this ``cdk synth`` runs CDK's built-in CloudFormation validation (opt-in)."""
    return os.environ.get("CDK_VALIDATION", "").lower() == "true"


def main() -> int:
    try:
        app = App(builtin_cloud_formation_validation=builtin_validation())
        build_app(app)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    except RuntimeError as error:
        # infra.bundling.LayerBuildError, wrapped by jsii (bundling runs in a
        # callback from the kernel): print our line, not the two stack traces.
        message = str(error)
        if LAYER_BUILD_FAILED not in message:
            raise
        print(message[message.index(LAYER_BUILD_FAILED) :], file=sys.stderr)
        return 1
    try:
        app.synth()
    except RuntimeError as error:
        # Policy validation (cdk-nag, CloudFormation rules) failed: the message
        # is the whole report; the jsii stack trace under it adds nothing.
        if not str(error).startswith("ValidationFailed"):
            raise
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
