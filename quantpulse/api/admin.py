"""The operator's routes are guarded by ``ADMIN_TOKEN`` alone (never by client API keys)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import request

from quantpulse.api import current_service
from quantpulse.errors import Forbidden, Unauthorized


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Check the admin token before anything else, so nobody learns more than 401/403."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        require_admin(request.headers.get("Authorization"), current_service().settings.admin_token)
        return view(*args, **kwargs)

    return guarded


def require_admin(header: str | None, admin_token: str | None) -> None:
    """Missing credentials 401, wrong ones 403; with no ADMIN_TOKEN configured, always 403."""
    if admin_token is None:
        raise Forbidden("Admin access is disabled on this server (ADMIN_TOKEN is not set).")
    if not header:
        raise Unauthorized("This route needs an admin token.", hint="Authorization: Bearer <ADMIN_TOKEN>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), admin_token.encode()):
        raise Forbidden("The admin token is wrong.")
