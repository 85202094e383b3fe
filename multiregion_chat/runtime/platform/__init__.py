"""What every handler shares: settings read from the environment, boto3 clients created once
per container, Powertools observability, retries, the init phase and the bus publisher.

Modules are imported one by one (``from multiregion_chat.runtime.platform import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
