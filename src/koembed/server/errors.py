"""Error responses in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, for every failure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse


class ApiError(Exception):
    """An error response in OpenAI's shape; raised by endpoints, rendered by the app's exception handler."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": {"message", "type", "param", "code"}}`` with OpenAI's types for 4xx and 5xx statuses."""
    from fastapi.responses import JSONResponse

    kind = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _field_path(loc: Sequence[Any]) -> str:
    """("body", "input", 2) -> "input[2]"."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "invalid JSON")
        return error_response(400, f"the request body is not valid JSON ({detail}, at character "
                                   f"{first['loc'][-1]})", code="invalid_json")
    parts = []
    for err in errors[:3]:
        where = _field_path(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        if not where:  # the body itself: missing, or not a JSON object
            msg = f"the request body must be a JSON object sent as application/json ({msg})"
        parts.append(f"{where}: {msg}" if where and not msg.startswith(f"{where}[") else msg)
    more = f" (and {len(errors) - 3} more errors)" if len(errors) > 3 else ""
    loc = [p for p in first["loc"] if p != "body"]
    param = str(loc[0]) if loc else None
    return error_response(422, "; ".join(parts) + more, param=param, code="invalid_value")
