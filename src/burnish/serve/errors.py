"""The one error type of `burnish serve` and its vLLM JSON shape.

Every failure a client can cause or see is a `ServeError` with an HTTP status and vLLM's error
``type`` string; `error_body` writes vLLM's ``ErrorResponse``:
``{"error": {"message": ..., "type": ..., "param": ..., "code": <the HTTP status>}}``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = ["ServeError", "bad_request", "error_body", "not_found"]


class ServeError(Exception):
    """A request that cannot be served, with the status and vLLM error type to answer with."""

    def __init__(
        self,
        message: str,
        status: int = HTTPStatus.BAD_REQUEST,
        err_type: str = "BadRequestError",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = int(status)
        self.err_type = err_type
        self.param = param

    def body(self) -> dict[str, Any]:
        """vLLM's ``ErrorResponse`` for this error."""
        return error_body(self.message, self.err_type, self.status, self.param)


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> dict:
    """``{"error": {"message", "type", "param", "code"}}`` as vLLM's ``ErrorResponse`` dumps it."""
    return {"error": {"message": message, "type": err_type, "param": param, "code": int(code)}}


def bad_request(message: str, param: str | None = None) -> ServeError:
    """A 400 ``BadRequestError`` (vLLM's answer to invalid parameters)."""
    return ServeError(message, HTTPStatus.BAD_REQUEST, "BadRequestError", param)


def not_found(message: str, param: str | None = None) -> ServeError:
    """A 404 ``NotFoundError`` (unknown model or adapter)."""
    return ServeError(message, HTTPStatus.NOT_FOUND, "NotFoundError", param)
