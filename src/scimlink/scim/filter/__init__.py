"""SCIM filter parsing (RFC 7644 §3.4.2.2): text in, immutable syntax tree out."""

from scimlink.scim.filter.ast import COMPARE_OPS
from scimlink.scim.filter.ast import And
from scimlink.scim.filter.ast import AttrPath
from scimlink.scim.filter.ast import Compare
from scimlink.scim.filter.ast import Node
from scimlink.scim.filter.ast import Not
from scimlink.scim.filter.ast import Or
from scimlink.scim.filter.ast import Present
from scimlink.scim.filter.ast import Value
from scimlink.scim.filter.ast import ValuePath
from scimlink.scim.filter.ast import equality_list
from scimlink.scim.filter.ast import or_operands
from scimlink.scim.filter.parser import FilterError
from scimlink.scim.filter.parser import format_filter
from scimlink.scim.filter.parser import parse_filter

__all__ = [
    "COMPARE_OPS",
    "And",
    "AttrPath",
    "Compare",
    "FilterError",
    "Node",
    "Not",
    "Or",
    "Present",
    "Value",
    "ValuePath",
    "equality_list",
    "format_filter",
    "or_operands",
    "parse_filter",
]
