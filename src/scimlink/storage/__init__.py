"""Storage: engines, declarative base, SCIM filter compilation to SQL, migrations."""
