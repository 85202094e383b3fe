"""Multi-region realtime chat on AWS: the CDK app's constructs, the Lambda runtime, the clients.

A team's CDK app imports the public API from here::

    from multiregion_chat import ChatConfig, ChatDeployment, FunctionSpec

Subpackages: :mod:`multiregion_chat.infra` (the CDK constructs and stacks),
:mod:`multiregion_chat.runtime` (the functions' code asset), :mod:`multiregion_chat.clients`
(the CLI, the web page, the server API client).

The names below are loaded on first use (PEP 562), not at import: Lambda imports this module
before every handler (``multiregion_chat.runtime.handlers.<name>.handler``), and the functions
have no aws_cdk to import nor the time to import it.
"""

from __future__ import annotations

# No imports at run time, not even typing's: this module is part of every function's init.
TYPE_CHECKING = False

__version__ = "0.2.0"
"""The distribution's version; CHANGELOG.md's newest entry names it."""

# public name -> the module that defines it
_EXPORTS = {
    "BusTargetContext": "multiregion_chat.infra.extensions",
    "ChatBusConsumer": "multiregion_chat.infra.extensions",
    "ChatClientRoute": "multiregion_chat.infra.extensions",
    "ChatConfig": "multiregion_chat.infra.config",
    "ChatDeployment": "multiregion_chat.infra.deployment",
    "ChatRegionStack": "multiregion_chat.infra.region_stack",
    "ConfigError": "multiregion_chat.infra.config",
    "FunctionSpec": "multiregion_chat.infra.extensions",
    "Grant": "multiregion_chat.infra.deployment",
    "RegionOverrides": "multiregion_chat.infra.config",
}

__all__ = [
    "BusTargetContext",
    "ChatBusConsumer",
    "ChatClientRoute",
    "ChatConfig",
    "ChatDeployment",
    "ChatRegionStack",
    "ConfigError",
    "FunctionSpec",
    "Grant",
    "RegionOverrides",
    "__version__",
]

if TYPE_CHECKING:
    from typing import Any

    from multiregion_chat.infra.config import ChatConfig, ConfigError, RegionOverrides
    from multiregion_chat.infra.deployment import ChatDeployment, Grant
    from multiregion_chat.infra.extensions import (
        BusTargetContext,
        ChatBusConsumer,
        ChatClientRoute,
        FunctionSpec,
    )
    from multiregion_chat.infra.region_stack import ChatRegionStack


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
