"""Admin: re-importing an updated pharmacy list - preview, then all of it or nothing; matched
by code, else region + name + postcode; deactivations only when the file is the whole list;
export and template; a semicolon-separated file said to be one."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import AdminAuditEvent, Pharmacy, User
from rxroute.runtime import Runtime
from tests import factories
from tests.admin.importing import apply, import_csv, preview
from tests.staff_pages import csrf_for

#: The columns before phone and opening hours were added: files in this shape still import.
OLD_COLUMNS = (
    "code,name,address_line1,address_line2,town,postcode,region,email,platform_contact_id,active"
)
COLUMNS = OLD_COLUMNS + ",phone,opening_hours"


@pytest.fixture
async def listed(session: AsyncSession, db: Runtime) -> dict[str, Pharmacy]:
    """Three pharmacies: two with codes, one without."""
    found = {
        "FA001": await factories.make_pharmacy(
            session,
            "B",
            code="FA001",
            name="Quay Pharmacy",
            postcode="LS1 5AB",
            platform_contact_id=7001,
            email=None,
        ),
        "FA002": await factories.make_pharmacy(
            session,
            "B",
            code="FA002",
            name="Hill Pharmacy",
            postcode="LS2 7EE",
            platform_contact_id=7002,
            email=None,
        ),
        "none": await factories.make_pharmacy(
            session,
            "A",
            name="Harbour Chemist",
            postcode="EH1 1AA",
            email="harbour@example.com",
        ),
    }
    await session.commit()
    return found


async def _export(client: httpx.AsyncClient) -> str:
    response = await client.get("/admin/pharmacies/export.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return response.content.decode("utf-8-sig")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _csv(rows: list[dict[str, str]], columns: str = COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns.split(","), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


async def _count(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Pharmacy)) or 0


async def test_the_export_imports_back_with_no_changes(
    as_admin: httpx.AsyncClient, listed: dict[str, Pharmacy]
) -> None:
    exported = await _export(as_admin)
    assert exported.splitlines()[0] == COLUMNS
    rows = _rows(exported)
    assert {row["name"] for row in rows} == {"Quay Pharmacy", "Hill Pharmacy", "Harbour Chemist"}
    assert {row["active"] for row in rows} == {"yes"}

    shown = await preview(as_admin, exported.encode("utf-8-sig"), whole_list=True)
    assert shown.status_code == 200, shown.text
    assert "0 to add, 0 to update, 0 to deactivate</strong>; 3 unchanged" in shown.text
    assert 'id="nothing-to-do"' in shown.text and 'id="apply-import"' not in shown.text


async def test_the_template_is_the_header_the_import_reads(as_admin: httpx.AsyncClient) -> None:
    response = await as_admin.get("/admin/pharmacies/template.csv")
    assert response.status_code == 200
    assert response.content.decode("utf-8-sig") == COLUMNS + "\r\n"
    shown = await preview(as_admin, response.content)
    assert "no pharmacies" in shown.text  # the header alone is read, and said to be empty


async def test_an_updated_list_previews_then_updates_adds_and_deactivates(
    as_admin: httpx.AsyncClient, session: AsyncSession, listed: dict[str, Pharmacy], admin: User
) -> None:
    rows = _rows(await _export(as_admin))
    by_name = {row["name"]: row for row in rows}
    by_name["Quay Pharmacy"]["town"] = "Bradford"  # matched by code
    by_name["Quay Pharmacy"]["name"] = "Quay Pharmacy & Travel Clinic"  # renamed: same code
    by_name["Harbour Chemist"]["code"] = "FA003"  # no code yet: matched by name + postcode
    del by_name["Hill Pharmacy"]  # not in the file: deactivated (whole list)
    new = {
        "code": "FA004",
        "name": "New Leaf Pharmacy",
        "address_line1": "9 Leaf St",
        "address_line2": "",
        "town": "Leeds",
        "postcode": "LS3 1AA",
        "region": "B",
        "email": "",
        "platform_contact_id": "7004",
        "active": "",
    }
    content = _csv([*by_name.values(), new])

    shown = await preview(as_admin, content, "updated.csv", whole_list=True)
    assert shown.status_code == 200, shown.text
    page = shown.text
    assert "1 to add, 2 to update, 1 to deactivate</strong>; 0 unchanged, of 3 rows" in page
    assert "<strong>town</strong>: Leeds → Bradford" in page
    assert "<strong>code</strong>: (empty) → FA003" in page
    assert "New Leaf Pharmacy" in page and "Hill Pharmacy" in page
    assert await _count(session) == 3  # the preview wrote nothing
    assert (await session.scalars(select(AdminAuditEvent))).all() == []

    applied = await apply(as_admin, page)
    assert applied.status_code == 200, applied.text
    assert "1 added, 2 updated, 1 deactivated" in applied.text
    for pharmacy in listed.values():
        await session.refresh(pharmacy)
    quay, hill, harbour = listed["FA001"], listed["FA002"], listed["none"]
    assert (quay.name, quay.town, quay.active) == (
        "Quay Pharmacy & Travel Clinic",
        "Bradford",
        True,
    )
    assert hill.active is False
    assert harbour.code == "FA003" and harbour.active is True
    added = await session.scalar(select(Pharmacy).where(Pharmacy.code == "FA004"))
    assert added is not None and added.active is True and added.platform_contact_id == 7004
    events = (await session.scalars(select(AdminAuditEvent))).all()
    assert sorted(e.action for e in events) == ["deactivated", "imported", "imported", "imported"]
    assert {e.actor_user_id for e in events} == {admin.id}

    # Applying the same preview again is refused: it no longer describes the list.
    again = await apply(as_admin, page)
    assert again.status_code == 409
    assert "changed after your preview" in again.text
    assert "0 to add, 0 to update, 0 to deactivate" in again.text


async def test_without_whole_list_nothing_is_deactivated(
    as_admin: httpx.AsyncClient, session: AsyncSession, listed: dict[str, Pharmacy]
) -> None:
    rows = [row for row in _rows(await _export(as_admin)) if row["code"] == "FA001"]
    response = await import_csv(as_admin, _csv(rows))
    assert "0 added, 0 updated, 0 deactivated" not in response.text  # nothing to apply
    assert 'id="nothing-to-do"' in response.text
    for pharmacy in listed.values():
        await session.refresh(pharmacy)
        assert pharmacy.active is True


async def test_a_change_between_preview_and_apply_is_shown_not_applied(
    as_admin: httpx.AsyncClient, session: AsyncSession, listed: dict[str, Pharmacy]
) -> None:
    rows = _rows(await _export(as_admin))
    rows[0]["town"] = "Wakefield"
    shown = await preview(as_admin, _csv(rows))
    assert "0 to add, 1 to update" in shown.text

    # Meanwhile another admin edits that pharmacy's town.
    target = await session.scalar(select(Pharmacy).where(Pharmacy.name == rows[0]["name"]))
    assert target is not None
    target.town = "York"
    await session.commit()

    response = await apply(as_admin, shown.text)
    assert response.status_code == 409
    assert "changed after your preview" in response.text
    assert "<strong>town</strong>: York → Wakefield" in response.text
    await session.refresh(target)
    assert target.town == "York"


async def test_a_tampered_preview_is_refused_clearly(
    as_admin: httpx.AsyncClient, listed: dict[str, Pharmacy]
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/import")
    response = await as_admin.post(
        "/admin/pharmacies/import/apply",
        data={"csrf_token": token, "content": "not!base64", "token": "x"},
    )
    assert response.status_code == 422
    assert "did not come back intact" in response.text


async def test_a_code_that_belongs_to_another_pharmacy_is_rejected(
    as_admin: httpx.AsyncClient, session: AsyncSession, listed: dict[str, Pharmacy]
) -> None:
    rows = _rows(await _export(as_admin))
    harbour = next(row for row in rows if row["name"] == "Harbour Chemist")
    harbour["code"] = "FA002"  # Hill Pharmacy's code: matched to Hill, clashing names
    quay = next(row for row in rows if row["name"] == "Quay Pharmacy")
    quay["code"] = "fa 009"  # normalised to FA009; a new code for a known name + postcode
    response = await preview(as_admin, _csv([harbour, quay]))
    assert response.status_code == 422
    page = response.text
    assert "<tr><td>2</td><td>Harbour Chemist</td>" in page
    assert "same pharmacy (name and postcode) as &#39;Harbour Chemist&#39; in the list" in page
    assert "<tr><td>3</td><td>Quay Pharmacy</td>" in page
    assert "stored pharmacy with this name and postcode has code FA001" in page
    await session.refresh(listed["FA002"])
    assert listed["FA002"].name == "Hill Pharmacy"


async def test_a_semicolon_separated_file_is_named_as_such(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    content = (
        COLUMNS.replace(",", ";") + "\r\nFA010;Semi Pharmacy;1 St;;Leeds;LS1 1AA;B;;7010;yes\r\n"
    ).encode()
    response = await preview(as_admin, content)
    assert response.status_code == 422
    assert "separated by semicolons (;), not commas" in response.text
    assert "Nothing was imported" in response.text
    assert await _count(session) == 0
    # The formulary's import reads files with the same parser, and says the same.
    token = await csrf_for(as_admin, "/admin/formulary")
    formulary = await as_admin.post(
        "/admin/formulary/import",
        data={"csrf_token": token},
        files={"file": ("f.csv", b"description;dmd_vpid;dmd_apid\r\nA;1;2\r\n", "text/csv")},
    )
    assert formulary.status_code == 422
    assert "separated by semicolons" in formulary.text


async def test_rejected_rows_keep_the_line_numbers_and_change_nothing(
    as_admin: httpx.AsyncClient, session: AsyncSession, listed: dict[str, Pharmacy]
) -> None:
    rows = _rows(await _export(as_admin))
    rows[1]["postcode"] = "NOPE"
    response = await preview(as_admin, _csv(rows))
    assert response.status_code == 422
    assert "<tr><td>3</td>" in response.text and "postcode: Enter a UK postcode" in response.text
    assert 'id="apply-import"' not in response.text


async def test_the_form_checks_the_code_too(
    as_admin: httpx.AsyncClient, session: AsyncSession, listed: dict[str, Pharmacy]
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    form = {
        "csrf_token": token,
        "name": "Coded Pharmacy",
        "address_line1": "1 Code St",
        "town": "Leeds",
        "postcode": "LS9 9AA",
        "region": "B",
        "platform_contact_id": "7050",
        "active": "yes",
    }
    taken = await as_admin.post("/admin/pharmacies/new", data={**form, "code": "fa001"})
    assert taken.status_code == 422
    assert "Another pharmacy (Quay Pharmacy) already has this code." in taken.text
    bad = await as_admin.post("/admin/pharmacies/new", data={**form, "code": "F!"})
    assert bad.status_code == 422 and "3 to 20 letters and digits" in bad.text
    saved = await as_admin.post("/admin/pharmacies/new", data={**form, "code": " fa 050 "})
    assert saved.status_code == 303
    added = await session.scalar(select(Pharmacy).where(Pharmacy.name == "Coded Pharmacy"))
    assert added is not None and added.code == "FA050"


async def test_phone_and_hours_export_and_a_file_without_them_keeps_them(
    as_admin: httpx.AsyncClient, listed: dict[str, Pharmacy], session: AsyncSession
) -> None:
    quay = listed["FA001"]
    quay.phone = "+44 7700 900555"
    quay.opening_hours = "Mon to Fri 9:00 to 18:00"
    await session.commit()
    rows = _rows(await _export(as_admin))
    exported = next(row for row in rows if row["code"] == "FA001")
    assert exported["phone"] == "+44 7700 900555"
    assert exported["opening_hours"] == "Mon to Fri 9:00 to 18:00"

    # An older file, without the two columns, renames the pharmacy and leaves them alone.
    exported["name"] = "Quay Pharmacy Leeds"
    done = await import_csv(as_admin, _csv([exported], OLD_COLUMNS))
    assert done.status_code in (200, 303), done.text
    await session.refresh(quay)
    assert quay.name == "Quay Pharmacy Leeds"
    assert (quay.phone, quay.opening_hours) == ("+44 7700 900555", "Mon to Fri 9:00 to 18:00")

    # A file with them changes them, and the preview says so first.
    exported["opening_hours"] = "Every day 8:00 to 22:00"
    shown = await preview(as_admin, _csv([exported]))
    assert "Every day 8:00 to 22:00" in shown.text
    await apply(as_admin, shown.text)
    await session.refresh(quay)
    assert quay.opening_hours == "Every day 8:00 to 22:00"


async def test_a_phone_that_is_not_one_is_rejected_by_name(
    as_admin: httpx.AsyncClient, listed: dict[str, Pharmacy], session: AsyncSession
) -> None:
    row = _rows(await _export(as_admin))[0]
    row["phone"] = "call us"
    shown = await preview(as_admin, _csv([row]))
    assert "phone: Enter a UK phone number" in shown.text
    assert 'id="apply-import"' not in shown.text
