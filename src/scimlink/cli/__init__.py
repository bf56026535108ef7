"""The ``scimlink`` command."""
