"""One module per Lambda function; each module's ``handler`` is the function's entry point
(``multiregion_chat.runtime.handlers.<module>.handler``).

Modules are imported one by one (``from multiregion_chat.runtime.handlers import <module>``), never
all at once: what a handler loads at init is its cold start.
"""
