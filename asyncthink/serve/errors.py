"""OpenAI-style errors: one exception for every refusal, and a middleware that renders all of them as JSON.

Every failure a client can see has the OpenAI shape
``{"error": {"message", "type", "param", "code"}}``: validation (400), unknown
model or route (404), wrong method (405), slow body (408), body too large
(413), overload (429), shutting down (503) and, for bugs or engine failures,
500. Nothing reaches a client as an HTML page or a bare traceback.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error",
          408: "timeout_error", 413: "invalid_request_error", 415: "invalid_request_error",
          429: "rate_limit_error", 503: "service_unavailable_error"}


class ApiError(Exception):
    """A refusal with an HTTP status, an OpenAI error type and code, and the offending parameter."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, "invalid_value", param)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Render ``ApiError``, aiohttp's own HTTP errors and unexpected exceptions as OpenAI JSON errors."""
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like pass through untouched
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return ApiError(exc.status, exc.reason, code, headers=allow).response()
    except Exception:  # a bug: logged with its traceback, reported without it
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        return ApiError(500, "internal server error", "internal_error").response()


def auth_middleware(api_key: str | None) -> Any:
    """With a key, ``/v1/*`` needs ``Authorization: Bearer <key>`` (compared in constant time); else 401."""
    expected = f"Bearer {api_key}".encode() if api_key else None

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if expected is not None and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                raise ApiError(401, "a valid API key is required (Authorization: Bearer ...)", "invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check
