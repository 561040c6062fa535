"""Reading a page form's text fields, the one way every page handler does it."""

from __future__ import annotations

from fastapi import Request

from rxroute.web.security import MAX_FORM_FIELDS


async def text_fields(request: Request) -> dict[str, str]:
    """The submitted text fields, files left out.

    The router's CSRF guard has already read the form within its size and field limits
    (Starlette caches the parsed form), so this reads no more of the body; the same limits
    apply when a router has no guard (a safe method carries no form).
    """
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    return {key: value for key, value in form.items() if isinstance(value, str)}
