"""The app half (Druva inSync's role): a multi-tenant SCIM 2.0 service provider."""
