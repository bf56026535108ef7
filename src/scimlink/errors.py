"""Domain errors shared by the CLI and admin APIs (no HTTP here)."""


class ScimLinkError(Exception):
    """Root of the errors an administrator sees as a readable message."""


class NotFoundError(ScimLinkError):
    pass


class ConflictError(ScimLinkError):
    pass


class InvalidInputError(ScimLinkError):
    pass


class ForbiddenError(ScimLinkError):
    """The acting administrator's role does not allow this."""
