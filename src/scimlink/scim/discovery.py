"""Discovery documents: ServiceProviderConfig, ResourceTypes, Schemas (RFC 7644 §4, RFC 7643 §5-7).

Only the User resource is offered: Druva inSync manages no groups over SCIM, so discovery does
not list ``Group`` and a client that reads it never tries.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from scim2_models import Context
from scim2_models import EnterpriseUser
from scim2_models import User

from scimlink.scim.resources import CORE_USER_SCHEMA
from scimlink.scim.resources import ENTERPRISE_USER_SCHEMA

SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def service_provider_config(
    base_url: str, *, max_results: int, bulk_operations: int = 0, bulk_payload: int = 0
) -> dict[str, Any]:
    """RFC 7643 §5: what this service supports, so clients pick PATCH, bulk and paging correctly.

    Bulk is advertised only with both of its limits (RFC 7644 §3.7.4).
    """
    bulk = bulk_operations > 0 and bulk_payload > 0
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/scimlink/scimlink#readme",
        "patch": {"supported": True},
        "bulk": {
            "supported": bulk,
            "maxOperations": bulk_operations if bulk else 0,
            "maxPayloadSize": bulk_payload if bulk else 0,
        },
        "filter": {"supported": True, "maxResults": max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A SCIM token generated in the management console (valid 365 days).",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base_url}/ServiceProviderConfig",
        },
    }


def user_resource_type(base_url: str) -> dict[str, Any]:
    """RFC 7643 §6: the single resource type this service offers."""
    return {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "description": "User Account",
        "endpoint": "/Users",
        "schema": CORE_USER_SCHEMA,
        "schemaExtensions": [{"schema": ENTERPRISE_USER_SCHEMA, "required": False}],
        "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/User"},
    }


#: Attributes RFC 7643 leaves optional that this service needs to create a user: inSync refuses
#: a user without a display name, so the published schema says so.
REQUIRED_HERE = frozenset({"displayName"})


@cache
def schema_bodies() -> tuple[dict[str, Any], ...]:
    bodies = []
    for model in (User, EnterpriseUser):
        body = model.to_schema().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        for attribute in body["attributes"]:
            if attribute["name"] in REQUIRED_HERE:
                attribute["required"] = True
        bodies.append(body)
    return tuple(bodies)


def schemas(base_url: str) -> list[dict[str, Any]]:
    """RFC 7643 §7: the User and enterprise extension schemas, with their characteristics."""
    return [
        {**body, "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{body['id']}"}}
        for body in schema_bodies()
    ]


def list_response(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Discovery lists are ListResponses without paging (RFC 7644 §4)."""
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(resources),
        "itemsPerPage": len(resources),
        "startIndex": 1,
        "Resources": resources,
    }
