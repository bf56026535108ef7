"""scimlink: identity lifecycle at both ends of the wire (SCIM 2.0 and SAML 2.0)."""

__version__ = "0.1.0"
