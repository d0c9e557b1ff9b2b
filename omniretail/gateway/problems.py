"""RFC 9457 problem details for every 4xx and 5xx.

``type`` is ``https://omniretail.dev/problems/<code>``; ``errors`` lists each offending field with
its path (``$.lines[0].quantity`` style paths from msgspec are turned into ``lines[0].quantity``).

A problem that is *not final* (``ApiError(..., final=False)``, or a domain error whose class says
``final = False``, such as ``payment-pending``) is marked so in the request scope: the idempotency
middleware then does not store it, and a retry with the same Idempotency-Key runs again.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from omniretail.config import ConfigError
from omniretail.domain.errors import (
    Conflict,
    DomainError,
    HandoffExpired,
    IllegalTransition,
    InvalidValue,
    NotFound,
    OutOfStock,
)
from omniretail.domain.payment import PaymentDeclined
from omniretail.services.customers import AuthenticationFailed

log = logging.getLogger("omniretail.gateway")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://omniretail.dev/problems/"
#: Key in ``scope["state"]``: this response is not the request's final answer (do not replay it).
NOT_FINAL = "omniretail_not_final"


def mark_not_final(scope: Any) -> None:
    """Tell the idempotency middleware not to store this request's response: a retry with the
    same Idempotency-Key must run again (e.g. 409 ``payment-pending``: the answer is not known yet)."""
    scope.setdefault("state", {})[NOT_FINAL] = True


class FieldError(msgspec.Struct, frozen=True, omit_defaults=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    errors: tuple[FieldError, ...] = ()


_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
}


class ApiError(HTTPException):
    """Raise from handlers for a problem with a stable code and an optional field."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        final: bool = True,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code = code
        self.field = field
        #: False: a retry with the same Idempotency-Key runs again (the response is not stored).
        self.final = final


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str = "",
    errors: tuple[FieldError, ...] = (),
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    body = Problem(
        type=TYPE_BASE + code,
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
    )
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def field_path(raw: str) -> str:
    return raw.lstrip(".").replace(".[", "[")


def _msgspec_errors(message: str) -> tuple[FieldError, ...]:
    m = _AT.match(message)
    if not m:
        return (FieldError(field="body", message=message),)
    msg, path = m.group("msg"), field_path(m.group("path") or "")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
    if unknown:
        name = unknown.group(1)
        return (
            FieldError(
                field=f"{path}.{name}" if path else name,
                message="unknown field (prices and totals are computed by the server)"
                if name in {"price", "unit_price", "total", "amount", "subtotal", "discount"}
                else "unknown field",
            ),
        )
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    if missing:
        name = missing.group(1)
        return (FieldError(field=f"{path}.{name}" if path else name, message="required field is missing"),)
    return (FieldError(field=path or "body", message=msg[:1].lower() + msg[1:]),)


def _body_errors(request: Request[Any, Any, Any]) -> tuple[FieldError, ...]:
    """Litestar reports a bad body as just ``data``; decode the (already read) body against the
    handler's body type again to name the exact field (``lines[0].quantity``)."""
    from litestar.utils.scope.state import ScopeState

    body = ScopeState.from_scope(request.scope).body
    field = request.route_handler.parsed_data_field
    if not isinstance(body, bytes) or field is None:
        return ()
    try:
        msgspec.json.decode(body, type=field.annotation)
    except msgspec.ValidationError as exc:
        return _msgspec_errors(str(exc))
    except msgspec.DecodeError:
        return (FieldError(field="body", message="the body is not valid JSON"),)
    return ()


def _validation_errors(exc: ValidationException) -> tuple[FieldError, ...]:
    """Field errors from Litestar's validation: parameters by ``query.<name>``, body fields by
    their path inside the body (``lines[0].quantity``)."""
    out: list[FieldError] = []
    for item in exc.extra if isinstance(exc.extra, list) else ():
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", ""))
        key = item.get("key")
        source = getattr(item.get("source"), "value", item.get("source"))
        if key and key != "data" and source in ("query", "header", "path", "cookie"):
            out.append(FieldError(field=f"{source}.{key}", message=message[:1].lower() + message[1:]))
        else:
            out.extend(_msgspec_errors(message))
    if not out:
        out.extend(_msgspec_errors(str(exc.detail)))
    return tuple(out)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    instance = request.url.path
    if isinstance(exc, ApiError):
        if not exc.final:
            mark_not_final(request.scope)
        errors: tuple[FieldError, ...] = (FieldError(field=exc.field, message=exc.detail),) if exc.field else ()
        return problem_response(
            exc.status_code, exc.code, exc.detail, instance=instance, errors=errors, headers=exc.headers
        )
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc)
        if any(not e.field.startswith(("query.", "header.", "path.", "cookie.")) for e in errors):
            # Decode the body again for the exact path (``payment.amount``, not just ``amount``).
            errors = _body_errors(request) or errors
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        # A malformed URL or header is a bad request; a body that fails validation is unprocessable.
        in_request_line = any(e.field.startswith(("query.", "header.", "path.", "cookie.")) for e in errors)
        status = 400 if in_request_line or (exc.status_code == 400 and "decode" in str(exc.detail).lower()) else 422
        return problem_response(status, "validation", detail, instance=instance, errors=errors)
    if isinstance(exc, DomainError):
        status = _status_for(exc)
        errors = (FieldError(field=exc.field, message=exc.message),) if exc.field else ()
        headers = None
        if not getattr(exc, "final", True):
            mark_not_final(request.scope)
            headers = {"Retry-After": str(getattr(exc, "retry_after", 1))}
        return problem_response(status, exc.code, exc.message, instance=instance, errors=errors, headers=headers)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        detail = exc.detail if exc.detail and exc.detail != _TITLES.get(status) else _TITLES.get(status, "")
        code = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not-found",
            405: "method-not-allowed",
            413: "body-too-large",
            429: "rate-limited",
        }.get(status, f"http-{status}")
        return problem_response(status, code, str(detail), instance=instance, headers=exc.headers)
    if _is_nul_text(exc):
        # PostgreSQL text cannot hold NUL; the transaction rolled back, so nothing changed.
        return problem_response(
            422,
            "invalid-text",
            "text must not contain NUL (\\u0000) characters",
            instance=instance,
            errors=(FieldError(field="body", message="contains NUL"),),
        )
    if isinstance(exc, ConfigError):
        log.error("configuration error while serving: %s", exc)
    log.exception("unhandled error on %s %s", request.method, instance, exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal",
        "an unexpected error happened; it has been logged",
        instance=instance,
    )


def _is_nul_text(exc: Exception) -> bool:
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError) and "0x00" in str(exc.orig)


def _status_for(exc: DomainError) -> int:
    if isinstance(exc, AuthenticationFailed):
        return 401
    if isinstance(exc, PaymentDeclined):
        return 402
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, HandoffExpired):
        return 410
    if isinstance(exc, OutOfStock | IllegalTransition | Conflict):
        return 409
    if isinstance(exc, InvalidValue):
        return 422
    return 400


#: Error responses every operation can give, for the OpenAPI document.
COMMON_ERRORS = (400, 401, 403, 404, 409, 413, 422, 429)
