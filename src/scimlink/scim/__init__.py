"""SCIM 2.0 protocol core: pure, no I/O."""
