"""Serving the admin UI: `index.html` for `/admin` and every deep link under it, the static files
under a content-addressed prefix.

The files are ES modules that import each other by relative path, so hashing each file's name
would mean rewriting the imports. Instead the whole `static/` tree gets one digest (sha256 of every
file's path and bytes, computed once at start-up) and every asset is served under
`/admin/static/<digest>/...` with a year-long `immutable` cache: a release that changes any file
changes the prefix. `index.html` names the prefix and is never cached, so a reload always picks up
the current one. Asset URLs under another digest answer 404 (an old tab reloads `index.html`).

Every answer carries a strict Content-Security-Policy: scripts and styles only from this origin,
no inline script, no `eval`, requests only to this origin (the UI talks to rocketd and nothing
else), no framing.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from rocketd.http.policy import Handler, public

STATIC_DIR = Path(__file__).parent / "static"
INDEX_FILE = "index.html"
ASSET_ROOT_MARK = "{{ASSET_ROOT}}"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_CACHED = "no-cache, no-store, must-revalidate"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}


@dataclass(frozen=True)
class StaticTree:
    """The UI's files, read once: their bytes by relative path, the tree's digest, the index."""

    files: dict[str, bytes]
    digest: str
    index_html: bytes

    @property
    def asset_root(self) -> str:
        return f"/admin/static/{self.digest}"


def load_static_tree(root: Path = STATIC_DIR) -> StaticTree:
    files: dict[str, bytes] = {}
    hasher = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        content = path.read_bytes()
        files[relative] = content
        hasher.update(relative.encode() + b"\0" + hashlib.sha256(content).digest())
    digest = hasher.hexdigest()[:16]
    template = files.pop(INDEX_FILE)
    index_html = template.replace(ASSET_ROOT_MARK.encode(), f"/admin/static/{digest}".encode())
    return StaticTree(files, digest, index_html)


def _content_type(name: str) -> str:
    suffix = Path(name).suffix
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def make_handlers(tree: StaticTree) -> tuple[Handler, Handler]:
    """The handlers of the index (every page path) and of the assets."""

    @public
    async def index(request: web.Request) -> web.StreamResponse:
        if request.match_info.get("tail", "").startswith("static/"):
            raise web.HTTPNotFound()  # an asset under a malformed prefix, not a page
        headers = {**SECURITY_HEADERS, "Cache-Control": NOT_CACHED}
        return web.Response(body=tree.index_html, content_type="text/html", headers=headers)

    @public
    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"]
        content = tree.files.get(name)
        if request.match_info["digest"] != tree.digest or content is None:
            raise web.HTTPNotFound()
        headers = {**SECURITY_HEADERS, "Cache-Control": IMMUTABLE}
        return web.Response(body=content, content_type=_content_type(name), headers=headers)

    return index, asset


def add_routes(app: web.Application, tree: StaticTree | None = None) -> None:
    """Register `/admin`, `/admin/...` (the index, for deep links) and the assets."""
    index, asset = make_handlers(tree or load_static_tree())
    r = app.router
    r.add_get("/admin/static/{digest:[0-9a-f]+}/{path:.+}", asset)
    r.add_get("/admin", index)
    r.add_get("/admin/{tail:.*}", index)
