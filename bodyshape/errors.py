"""Exceptions raised at the project's boundaries, with messages meant for a person."""


class BodyShapeError(ValueError):
    """A user-facing error: the message says what was wrong and what to do."""


class InputImageError(BodyShapeError):
    """A photo that cannot be turned into a usable silhouette."""
