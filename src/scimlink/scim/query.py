"""List and search parameters (RFC 7644 §3.4.2 and §3.4.3), parsed once for GET and POST /.search."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from scimlink.scim.errors import invalid_filter
from scimlink.scim.errors import invalid_value
from scimlink.scim.filter import FilterError
from scimlink.scim.filter import Node
from scimlink.scim.filter import parse_filter
from scimlink.scim.projection import parse_attribute_list


@dataclass(frozen=True, slots=True)
class Limits:
    """Request-cost limits (security.md §3.4): filters are parsed with bounded size."""

    max_results: int = 1000
    max_filter_length: int = 4096
    max_filter_nodes: int = 50
    max_filter_depth: int = 10
    #: Values of one ``a eq "x" or a eq "y" …`` list (a directory's batched lookup), which
    #: runs as one indexed ``IN``: more than ``max_filter_nodes`` allows for other shapes.
    max_filter_values: int = 100


@dataclass(frozen=True, slots=True)
class ListQuery:
    filter: Node | None = None
    sort_by: str | None = None
    descending: bool = False
    start_index: int = 1
    count: int = 100
    attributes: list[str] = field(default_factory=list)
    excluded_attributes: list[str] = field(default_factory=list)


def _integer(name: str, raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise invalid_value(f"'{name}' must be an integer.")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise invalid_value(f"'{name}' must be an integer, got {raw!r}.") from None


def _names(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(item).strip() for item in raw if str(item).strip()]
    return parse_attribute_list(raw if isinstance(raw, str) else None)


def parse_list_query(params: Mapping[str, Any], limits: Limits) -> ListQuery:
    """Build a :class:`ListQuery` from query parameters or a SearchRequest body.

    ``startIndex`` below 1 is read as 1 and ``count`` is clamped to ``[0, maxResults]``
    (RFC 7644 §3.4.2.4: values out of range are interpreted, not rejected).
    """
    raw_filter = params.get("filter")
    node: Node | None = None
    if raw_filter is not None and str(raw_filter).strip():
        try:
            node = parse_filter(
                str(raw_filter),
                max_length=limits.max_filter_length,
                max_nodes=limits.max_filter_nodes,
                max_depth=limits.max_filter_depth,
                max_values=limits.max_filter_values,
            )
        except FilterError as exc:
            raise invalid_filter(str(exc)) from None
    sort_order = str(params.get("sortOrder") or "ascending").lower()
    if sort_order not in {"ascending", "descending"}:
        raise invalid_value("'sortOrder' must be 'ascending' or 'descending'.")
    start = _integer("startIndex", params.get("startIndex"))
    count = _integer("count", params.get("count"))
    sort_by = params.get("sortBy")
    return ListQuery(
        filter=node,
        sort_by=str(sort_by) if sort_by else None,
        descending=sort_order == "descending",
        start_index=max(1, start if start is not None else 1),
        count=min(max(0, count if count is not None else 100), limits.max_results),
        attributes=_names(params.get("attributes")),
        excluded_attributes=_names(params.get("excludedAttributes")),
    )
