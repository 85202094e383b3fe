"""Where the CLI client connects: URLs from the endpoints file, and identity on the URL."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from clients.tokens import Minter, mint_token, minter_from_endpoints


class ClientError(Exception):
    """A problem the CLI reports in one line (exit status 2)."""


def endpoint_url(
    endpoints_file: Path, region: str, kind: str = "websocket"
) -> tuple[str, Minter | None]:
    """The region's ``kind`` URL from the endpoints file, and how to mint its tokens (with
    the sandbox's identity provider key or signing secret; None: the app has no auth)."""
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
    try:
        mint = minter_from_endpoints(document)
    except (OSError, KeyError, ValueError) as exc:
        raise ClientError(f"{endpoints_file}: cannot read its oidc key: {exc}") from None
    return str(regions[region][kind]), mint


def connect_url(
    base: str,
    user: str,
    name: str | None,
    *,
    token: str | None = None,
    secret: str | None = None,
    mint: Minter | None = None,
    rooms: list[str] | None = None,
) -> str:
    """``base`` with the token on it: ``token``, else one minted with ``mint`` or an HS256
    ``secret``; without any of them ``?userId=&name=`` (an app without auth)."""
    if token is None and mint is not None:
        token = mint(user, name=name, rooms=rooms)
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
