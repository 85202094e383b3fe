"""Chat clients: the CLI (``python -m clients.chat``) and the web page (clients/web/)."""
