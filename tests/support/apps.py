"""Test helpers that provision an app through the HTTP API and load example schemas into it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support.databases import unique_name
from tests.support.helpers import bearer, platform_login
from tests.support.paths import ROOT


@dataclass
class AppClient:
    """An aiohttp test client bound to one freshly created app, as its seeded admin."""

    client: Any
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    def url(self, path: str) -> str:
        return f"/api/{self.name}/{path.lstrip('/')}"

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        resp = await self.client.request(
            method, self.url(path), json=body, headers=self.headers, **kw
        )
        return resp.status, await resp.json()

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, payload = await self.call(method, path, body)
        assert got == status, payload
        return payload

    async def load_schema(self, schema: dict[str, Any]) -> None:
        """Create the schema's entities then relations through the admin API."""
        for entity in schema.get("entities", []):
            await self.ok("POST", "_admin/entities", entity, 201)
        for relation in schema.get("relations", []):
            await self.ok("POST", "_admin/relations", relation, 201)


async def new_app(client: Any) -> AppClient:
    ptoken = (await platform_login(client))["access_token"]
    name = unique_name("app")
    resp = await client.post("/api/_platform/apps", json={"name": name}, headers=bearer(ptoken))
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        f"/api/{name}/auth/login", json={"email": "admin@localhost", "password": "changeme"}
    )
    token = (await resp.json())["data"]["access_token"]
    return AppClient(client, name, token)


def example_schema(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "examples" / f"{name}.json").read_text()))


async def post_document(app: AppClient, path: str, doc: Any) -> tuple[int, Any]:
    """POST a schema document (a dict, or the raw bytes/text of a body) to `_admin/{path}`."""
    resp = await app.client.post(
        app.url(f"_admin/{path}"),
        data=doc if isinstance(doc, (bytes, str)) else json.dumps(doc),
        headers={**app.headers, "Content-Type": "application/json"},
    )
    return resp.status, await resp.json()


async def import_doc(app: AppClient, doc: Any) -> tuple[int, Any]:
    return await post_document(app, "import", doc)


async def diff_doc(app: AppClient, doc: Any) -> tuple[int, Any]:
    return await post_document(app, "diff", doc)
