"""scim2-tester 0.5.2, the python-scim RFC 7643/7644 conformance checker, against a live server.

The checker talks HTTP to uvicorn (``live_server``) through scim2-client, discovers what the
service offers and exercises it: discovery endpoints and their 404/405 answers, create, read,
list, ``attributes``/``excludedAttributes`` on GET, list and ``POST /.search``, PUT, DELETE, and
PATCH add/remove/replace of every writable attribute path (scim-servers.md §4).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status
from scim2_tester import check_server
from sqlalchemy import Engine

from tests.conftest import BASE
from tests.conftest import make_tenant

pytestmark = pytest.mark.interop

FAILED = (Status.ERROR, Status.CRITICAL)

#: scim2-tester's check of the root-level ``POST /.search`` (RFC 7644 §3.4.3).
ROOT_SEARCH = "search_with_attributes"


@pytest.fixture(scope="module")
def results(live_server: str, engine: Engine) -> Iterator[list[Any]]:
    tenant = make_tenant(engine)
    with httpx2.Client(
        base_url=f"{live_server}{BASE}",
        headers={"Authorization": f"Bearer {tenant.token}"},
    ) as http:
        client = SyncSCIMClient(http)
        client.discover()
        yield check_server(client)


def _describe(results: list[Any]) -> str:
    return "\n".join(f"{r.status.name} {r.title} [{r.resource_type}]: {r.reason}" for r in results)


def test_scim2_tester_finds_no_errors(results: list[Any]) -> None:
    counts = collections.Counter(r.status.name for r in results)
    failed = [r for r in results if r.status in FAILED]
    assert failed == [], f"{counts}\n{_describe(failed)}"
    assert counts["SUCCESS"] > 50, counts


def test_scim2_tester_root_search_with_attributes(results: list[Any]) -> None:
    checked = [r for r in results if r.title == ROOT_SEARCH]
    assert checked, "scim2-tester ran no search_with_attributes check"
    failed = [r for r in checked if r.status in FAILED]
    assert failed == [], _describe(failed)
