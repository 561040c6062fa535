"""The formulary: admin list, all-or-nothing CSV import, deactivation, audit trail."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.formulary import service
from rxroute.formulary.sample import SAMPLE_CSV, sample_medicines
from rxroute.models import AdminAuditEvent, FormularyItem, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.staff_pages import csrf_for, sign_in

HEADER = "description,dmd_vpid,dmd_apid,default_quantity,default_directions,active"
GOOD = [
    "Semaglutide 1mg/0.75ml pen,39954311000001108,,1 pen,Inject 1mg once weekly,yes",
    '"Orlistat 60mg capsules, 84",322184002,1234567890123,84 capsules,'
    '"Take one, three times a day",',
    "Pen needles 31G 5mm,,,100 needles,Use one new needle for each injection,no",
]


async def _import(client: httpx.AsyncClient, content: bytes) -> httpx.Response:
    token = await csrf_for(client, "/admin/formulary")
    return await client.post(
        "/admin/formulary/import",
        data={"csrf_token": token},
        files={"file": ("formulary.csv", content, "text/csv")},
    )


async def _lines(session: AsyncSession) -> dict[str, FormularyItem]:
    fresh = select(FormularyItem).execution_options(populate_existing=True)
    return {item.description: item for item in await session.scalars(fresh)}


async def _audit(session: AsyncSession, action: str) -> list[AdminAuditEvent]:
    return list(
        await session.scalars(
            select(AdminAuditEvent).where(
                AdminAuditEvent.entity_type == "formulary", AdminAuditEvent.action == action
            )
        )
    )


async def test_a_good_file_imports_every_line_with_an_audit_event(
    as_admin: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    response = await _import(as_admin, "\r\n".join([HEADER, *GOOD, ""]).encode())
    assert response.status_code == 200, response.text
    assert "Imported 3 lines from formulary.csv" in response.text
    found = await _lines(session)
    assert set(found) == {
        "Semaglutide 1mg/0.75ml pen",
        "Orlistat 60mg capsules, 84",
        "Pen needles 31G 5mm",
    }
    orlistat = found["Orlistat 60mg capsules, 84"]
    assert (orlistat.dmd_vpid, orlistat.dmd_apid) == ("322184002", "1234567890123")
    assert orlistat.default_quantity == "84 capsules"
    assert orlistat.default_directions == "Take one, three times a day"
    assert orlistat.active
    needles = found["Pen needles 31G 5mm"]
    assert (needles.dmd_vpid, needles.dmd_apid, needles.active) == (None, None, False)
    events = await _audit(session, "imported")
    assert {event.entity_id for event in events} == {item.id for item in found.values()}
    assert all(event.actor_user_id == admin.id for event in events)
    semaglutide = next(e for e in events if e.entity_id == found[GOOD[0].split(",")[0]].id)
    assert semaglutide.changes["dmd_vpid"] == {"before": None, "after": "39954311000001108"}
    # The list shows them, and the audit trail names the line by its description.
    listed = await as_admin.get("/admin/formulary")
    assert "2 active lines of 3" in listed.text
    trail = await as_admin.get("/admin/audit?entity=formulary")
    assert "Semaglutide 1mg/0.75ml pen</a>: imported" in trail.text


async def test_one_bad_line_imports_nothing_and_names_its_line_and_column(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    bad = "Tirzepatide 7.5mg pen,42X73,,4 pens,Inject 7.5mg once weekly,yes"
    response = await _import(as_admin, "\n".join([HEADER, GOOD[0], bad, GOOD[2]]).encode())
    assert response.status_code == 422
    page = response.text
    assert "Nothing was imported" in page
    assert "1 of 3 rows in formulary.csv was rejected" in page
    assert "<tr><td>3</td><td>Tirzepatide 7.5mg pen</td>" in page
    assert "dmd_vpid: A dm+d VPID is 6 to 18 digits." in page
    assert await _lines(session) == {}
    assert await _audit(session, "imported") == []


async def test_each_kind_of_bad_line_is_reported_by_line(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    rows = [
        HEADER,
        ",39954311000001108,,1 pen,Inject,yes",  # 2: no description
        "No quantity,39954311000001108,,,Inject,yes",  # 3
        "APID alone,,1234567890123,1 pack,Take,yes",  # 4
        "Too,few,columns",  # 5
        "Maybe active,,,1 pack,Take,maybe",  # 6
        "Long quantity,,,{},Take,yes".format("x" * 101),  # 7
        "",
    ]
    response = await _import(as_admin, "\n".join(rows).encode())
    assert response.status_code == 422
    page = response.text
    assert "<tr><td>2</td><td></td>" in page and "description: Enter the medicine" in page
    assert "<tr><td>3</td><td>No quantity</td>" in page
    assert "default_quantity: Enter the default quantity" in page
    assert "<tr><td>4</td><td>APID alone</td>" in page
    assert "dmd_vpid: An APID belongs to a VPID" in page
    assert "<tr><td>5</td>" in page and "has 3 columns, the header has 6" in page
    assert "<tr><td>6</td><td>Maybe active</td>" in page and "active: Use yes or no" in page
    assert "<tr><td>7</td><td>Long quantity</td>" in page
    assert "default_quantity: At most 100 characters." in page
    assert "6 of 6 rows" in page
    assert await _lines(session) == {}


async def test_duplicates_in_the_file_and_in_the_list_are_rejected(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    first = await _import(as_admin, "\n".join([HEADER, GOOD[0]]).encode())
    assert first.status_code == 200, first.text
    rows = [
        HEADER,
        "Orlistat 120mg capsules,322183008,,84 capsules,Take one three times a day,yes",  # 2
        "ORLISTAT 120MG  capsules,322183008,,42 capsules,Take one three times a day,yes",  # 3
        "semaglutide 1MG/0.75ML pen,39954311000001108,,2 pens,Inject weekly,yes",  # 4
    ]
    response = await _import(as_admin, "\n".join(rows).encode())
    assert response.status_code == 422
    page = response.text
    assert "<tr><td>3</td><td>ORLISTAT 120MG capsules</td>" in page
    assert "description: same medicine as line 2" in page
    assert "<tr><td>4</td>" in page and "description: already in the formulary" in page
    assert "<tr><td>2</td>" not in page
    assert set(await _lines(session)) == {"Semaglutide 1mg/0.75ml pen"}


async def test_a_deactivated_line_can_be_replaced_by_an_import(
    as_admin: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    await _import(as_admin, "\n".join([HEADER, GOOD[0]]).encode())
    old = (await _lines(session))["Semaglutide 1mg/0.75ml pen"]
    token = await csrf_for(as_admin, "/admin/formulary")
    response = await as_admin.post(
        f"/admin/formulary/{old.id}/deactivate", data={"csrf_token": token}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/formulary?done=deactivated"
    await session.refresh(old)
    assert not old.active
    [event] = await _audit(session, "deactivated")
    assert (event.entity_id, event.actor_user_id) == (old.id, admin.id)
    assert event.changes == {"active": {"before": True, "after": False}}
    # Again: nothing changes, no second event.
    again = await as_admin.post(f"/admin/formulary/{old.id}/deactivate", data={"csrf_token": token})
    assert again.headers["location"] == "/admin/formulary?done=inactive"
    assert len(await _audit(session, "deactivated")) == 1
    # The corrected line is imported beside it.
    corrected = GOOD[0].replace("1 pen", "2 pens")
    response = await _import(as_admin, "\n".join([HEADER, corrected]).encode())
    assert response.status_code == 200, response.text
    rows = list(
        await session.scalars(
            select(FormularyItem).where(FormularyItem.description == "Semaglutide 1mg/0.75ml pen")
        )
    )
    assert sorted((r.active, r.default_quantity) for r in rows) == [
        (False, "1 pen"),
        (True, "2 pens"),
    ]
    missing = await as_admin.post(
        f"/admin/formulary/{uuid.uuid4()}/deactivate", data={"csrf_token": token}
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (HEADER.encode() + b"\n", "no formulary lines"),
        (b"description,default_quantity\nX,1\n", "missing columns: dmd_vpid"),
        (b"PK\x03\x04binary-xlsx", "spreadsheet file"),
    ],
)
async def test_unreadable_files_are_refused_clearly(
    as_admin: httpx.AsyncClient, session: AsyncSession, content: bytes, message: str
) -> None:
    response = await _import(as_admin, content)
    assert response.status_code == 422
    assert message in response.text
    assert "Nothing was imported" in response.text
    assert await _lines(session) == {}


async def test_the_sample_file_imports_through_the_page(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await _import(as_admin, SAMPLE_CSV.read_bytes())
    assert response.status_code == 200, response.text
    found = await _lines(session)
    assert sorted(found) == sorted(m.description for m in sample_medicines())
    assert "Orlistat 120mg capsules" in found


async def test_two_imports_at_once_add_the_line_once(db: Runtime, session: AsyncSession) -> None:
    """Both check before either commits: the table lock makes the second wait and then see
    the first's line, so it reports the duplicate (no index violation, no second line)."""
    admin = await factories.make_user(session, Role.ADMIN)
    await session.commit()
    data = "\n".join([HEADER, GOOD[0]]).encode()
    first_has_lock = asyncio.Event()

    async def first() -> service.ImportReport:
        async with db.sessionmaker() as mine, mine.begin():
            report = await service.import_lines(mine, data, actor_id=admin.id)
            first_has_lock.set()
            await asyncio.sleep(0.3)  # the second is now waiting on the lock
            return report

    async def second() -> service.ImportReport:
        await first_has_lock.wait()
        async with db.sessionmaker() as mine, mine.begin():
            return await service.import_lines(mine, data, actor_id=admin.id)

    one, two = await asyncio.gather(first(), second())
    assert one.ok and one.imported == 1
    assert not two.ok and two.imported == 0
    assert "already in the formulary" in two.rejected[0].reasons[0]
    count = await session.scalar(select(func.count()).select_from(FormularyItem))
    assert count == 1


@pytest.mark.parametrize("role", [Role.PATIENT, Role.SUPPORT, Role.PRESCRIBER])
async def test_only_admins_open_the_formulary_pages(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, role: Role
) -> None:
    user = await factories.make_user(session, role)
    await session.commit()
    await sign_in(client, user)
    assert (await client.get("/admin/formulary")).status_code == 403
