"""Where the CLI client connects: URLs from the endpoints file, and identity on the URL."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from clients.tokens import mint_token


class ClientError(Exception):
    """A problem the CLI reports in one line (exit status 2)."""


def endpoint_url(
    endpoints_file: Path, region: str, kind: str = "websocket"
) -> tuple[str, str | None]:
    """The region's ``kind`` URL and the signing secret (if any) from the endpoints file."""
    try:
        document = json.loads(endpoints_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientError(
            f"{endpoints_file} not found: start the sandbox (`make local`) or pass --url"
        ) from None
    except ValueError as exc:
        raise ClientError(f"{endpoints_file} is not JSON: {exc}") from None
    regions = document.get("regions") or {}
    if region not in regions:
        raise ClientError(f"region {region} is not in {endpoints_file} (has: {', '.join(regions)})")
    if not regions[region].get(kind):
        raise ClientError(f"region {region} has no {kind} URL in {endpoints_file}")
    return str(regions[region][kind]), document.get("signingSecret")


def connect_url(
    base: str,
    user: str,
    name: str | None,
    *,
    token: str | None = None,
    secret: str | None = None,
    rooms: list[str] | None = None,
) -> str:
    if token is None and secret is not None:
        token = mint_token(secret, user, name=name, rooms=rooms)
    if token is not None:
        query = {"token": token}
    else:
        query = {"userId": user, **({"name": name} if name else {})}
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode(query)}"


def public_url(url: str) -> str:
    """``url`` without its query (the token): what the client prints."""
    return url.split("?")[0]
