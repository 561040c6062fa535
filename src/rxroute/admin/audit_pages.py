"""Admin: the audit trail, newest first, filterable by kind of entity.

Each pharmacy's and prescriber's own page shows its history too (:mod:`rxroute.admin.pages`);
this list is every admin change in one place, with who made it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from rxroute.admin import audit
from rxroute.auth.dependencies import SessionDep
from rxroute.models import AuditEntity
from rxroute.web.deps import AdminPageUser, require_admin_page
from rxroute.web.security import csrf_guard
from rxroute.web.templating import render

#: Admins only; the guard is declared although the page only reads, so a POST added here
#: later is guarded too.
router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(require_admin_page), Depends(csrf_guard)],
)

PAGE_SIZE = 50


@router.get("/audit", response_class=HTMLResponse)
async def audit_list(
    request: Request,
    session: SessionDep,
    user: AdminPageUser,
    entity: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    kinds = [kind.value for kind in AuditEntity]
    chosen = AuditEntity(entity) if entity in kinds else None
    found = await audit.recent(
        session, entity_type=chosen, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    return render(
        request,
        "admin/audit.html",
        {
            "lines": found.lines,
            "total": found.total,
            "entity": chosen.value if chosen else "",
            "kinds": kinds,
            "page": page,
            "pages": max(1, -(-found.total // PAGE_SIZE)),
        },
    )
