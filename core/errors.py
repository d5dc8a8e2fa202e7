"""Errors that cross from services to entry points.

Each carries a stable, machine-readable ``code`` that clients may branch on, a human
``message``, and the HTTP status an API should answer with. Services raise them;
entry points render them (JSON ``{"code", "message"}``, a bot reply, an admin message).
"""


class ApplicationError(Exception):
    code = "application_error"
    status = 400

    def __init__(self, message: str = "", *, code: str | None = None, status: int | None = None, extra: dict | None = None):
        self.message = message or self.__doc__ or self.code
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra or {}
        super().__init__(self.message)

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.extra}


class NotFound(ApplicationError):
    """Not found."""

    code = "not_found"
    status = 404


class PermissionDenied(ApplicationError):
    """Not allowed."""

    code = "permission_denied"
    status = 403


class Conflict(ApplicationError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


class PlatformError(ApplicationError):
    """A platform (WeChat, Alipay) failed or answered something we cannot use."""

    code = "platform_error"
    status = 502
