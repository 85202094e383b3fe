"""Where the CLI client connects: URLs from the endpoints file, and identity on the URL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlencode

from multiregion_chat.clients.tokens import Minter, mint_token, minter_from_endpoints

_AWS_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class ClientError(Exception):
    """A problem the CLI reports in one line (exit status 2)."""


def load_regions(endpoints_file: Path) -> tuple[dict[str, dict[str, str]], Minter | None]:
    """Every region's URLs (``{"websocket": ..., "http": ...}``) and how to mint their tokens
    (with the sandbox's identity provider key or signing secret; None: no key in the file).

    Reads the sandbox's endpoints file (``{"regions": {...}, "signingSecret": ...}``) or the
    stacks' outputs as ``cdk deploy --outputs-file`` writes them (one object per stack with
    ``WebSocketUrl`` and ``HttpUrl``; the region is read from the URL's host).
    """
    try:
        document = json.loads(endpoints_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientError(
            f"{endpoints_file} not found: start the sandbox (`make local`) or pass --url"
        ) from None
    except ValueError as exc:
        raise ClientError(f"{endpoints_file} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ClientError(f"{endpoints_file} is not an endpoints or outputs file")
    if "regions" in document:
        try:
            mint = minter_from_endpoints(document)
        except (OSError, KeyError, ValueError) as exc:
            raise ClientError(f"{endpoints_file}: cannot read its oidc key: {exc}") from None
        return dict(document.get("regions") or {}), mint
    regions: dict[str, dict[str, str]] = {}
    for outputs in document.values():
        if isinstance(outputs, dict) and isinstance(outputs.get("WebSocketUrl"), str):
            found = _AWS_HOST.search(outputs["WebSocketUrl"])
            region = found.group(1) if found else f"stack-{len(regions) + 1}"
            regions[region] = {"websocket": outputs["WebSocketUrl"]}
            if isinstance(outputs.get("HttpUrl"), str):
                regions[region]["http"] = outputs["HttpUrl"]
    return regions, None


def endpoint_url(
    endpoints_file: Path, region: str, kind: str = "websocket"
) -> tuple[str, Minter | None]:
    """The region's ``kind`` URL from the endpoints file, and how to mint its tokens (with
    the sandbox's identity provider key or signing secret; None: the app has no auth)."""
    regions, mint = load_regions(endpoints_file)
    if region not in regions:
        raise ClientError(f"region {region} is not in {endpoints_file} (has: {', '.join(regions)})")
    if not regions[region].get(kind):
        raise ClientError(f"region {region} has no {kind} URL in {endpoints_file}")
    return str(regions[region][kind]), mint


def region_names(endpoints_file: Path, wanted: str) -> list[str]:
    """``--region``: a comma-separated list, or ``all`` (every region of the file)."""
    if wanted.strip() == "all":
        return list(load_regions(endpoints_file)[0])
    return [r.strip() for r in wanted.split(",") if r.strip()]


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
