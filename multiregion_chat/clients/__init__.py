"""Chat clients: the CLI (``python -m multiregion_chat.clients.chat``), the web page (``web/``)
and the server API client."""
