"""Errors the services raise; ``str(error)`` is one line fit for an operator or an API client."""

from __future__ import annotations


class ServiceError(ValueError):
    """A request the domain refuses; nothing was changed."""


class NotFound(ServiceError):
    pass


class Invalid(ServiceError):
    pass


class Conflict(ServiceError):
    pass
