"""The attachment buckets of the smoke test's fake chat (tests/smoke/chat_server.py).

One HTTP server on 127.0.0.1 (aiohttp, on the chat's event loop) plays every region's bucket:
``POST /<region>`` takes a presigned-POST-shaped form for a key the chat handed out as a slot
(anything else is 403, a size other than the slot's 400, as S3's policy check would answer),
``GET /<region>/<key>`` serves that region's copy. Replication is explicit:
:meth:`Buckets.replicate` copies an object into a region, with other bytes when asked to,
so the chat decides when a replica "arrives" without any clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["Buckets"]


@dataclass
class Buckets:
    """``objects[region][key]``: each region's copies; ``slots``: key -> (region, size)."""

    objects: dict[str, dict[str, bytes]] = field(default_factory=dict)
    slots: dict[str, tuple[str, int]] = field(default_factory=dict)
    url: str = ""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{region}", self._post)
        app.router.add_get("/{region}/{key:.+}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def slot(self, region: str, key: str, size: int) -> str:
        """Where a slot for ``key`` in ``region`` POSTs to."""
        self.slots[key] = (region, size)
        return f"{self.url}/{region}"

    def download_url(self, region: str, key: str) -> str:
        return f"{self.url}/{region}/{key}"

    def has(self, region: str, key: str) -> bool:
        return key in self.objects.get(region, {})

    def replicate(self, key: str, origin: str, destination: str, *, corrupt: bool) -> None:
        content = self.objects[origin][key]
        if corrupt:
            content = bytes(byte ^ 0xFF for byte in content[:16]) + content[16:]
        self.objects.setdefault(destination, {})[key] = content

    async def _post(self, request: web.Request) -> web.Response:
        region = request.match_info["region"]
        form = await request.post()
        key = str(form.get("key"))
        upload = form.get("file")
        if self.slots.get(key, ("", 0))[0] != region or not isinstance(upload, web.FileField):
            return web.Response(status=403, text="AccessDenied: no such slot")
        content = upload.file.read()
        if len(content) != self.slots[key][1]:
            return web.Response(status=400, text="EntityTooLarge or EntityTooSmall")
        self.objects.setdefault(region, {})[key] = content
        return web.Response(status=204)

    async def _get(self, request: web.Request) -> web.Response:
        region, key = request.match_info["region"], request.match_info["key"]
        content = self.objects.get(region, {}).get(key)
        if content is None:
            return web.Response(status=404, text="NoSuchKey")
        return web.Response(body=content, content_type="application/octet-stream")
