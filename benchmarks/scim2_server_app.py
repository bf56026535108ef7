"""scim2-server 0.8.3 in memory under uvicorn, as the benchmark's point of comparison.

It is served the way ``scimlink sp serve`` is: one uvicorn process, no access log, a static
bearer token checked on every request. Before serving, it creates ``--users`` users through its
own request path (validation included, no network) and writes their ids to ``--ids-file``.

Usage: python benchmarks/scim2_server_app.py --port P --token T --users N --ids-file F
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import uvicorn
from scim2_models import ScimProvider
from scim2_models import UnauthorizedException
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.utils import load_default_provider
from workload import payload

BASE_URL = "http://127.0.0.1/v2"


class BearerApplication(ASGIApplication):
    """The ASGI application, refusing requests without the one bearer token."""

    def __init__(self, provider: ScimProvider, token: str) -> None:
        super().__init__(AsyncInMemoryStorage(), provider)
        self.token = token

    def check_auth(self, request: ScimRequest) -> None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or token != self.token:
            raise UnauthorizedException


async def seed(app: BearerApplication, count: int) -> list[str]:
    """Create ``count`` users as POST /Users would, and return their ids."""
    headers = {"Authorization": f"Bearer {app.token}", "Content-Type": "application/scim+json"}
    ids: list[str] = []
    for index in range(count):
        request = ScimRequest(
            method="POST",
            base_url=BASE_URL,
            path="/Users",
            headers=headers,
            body=json.dumps(payload(index)).encode(),
        )
        response = await app.serve(request)
        body: Any = response.body
        if int(response.status) != 201 or not isinstance(body, dict):
            raise RuntimeError(f"seeding user {index} failed: {response.status} {body}")
        ids.append(str(body["id"]))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--ids-file", type=Path, required=True)
    args = parser.parse_args()
    app = BearerApplication(load_default_provider(), args.token)
    ids = asyncio.run(seed(app, args.users))
    args.ids_file.write_text(json.dumps(ids))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
