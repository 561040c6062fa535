"""Admin pages: roles, CSRF, pharmacies (forms and CSV import), prescribers, regions."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin.csv_import import MAX_IMPORT_BYTES
from rxroute.admin.service import normalise_postcode
from rxroute.models import Pharmacy, Prescriber, Role
from rxroute.runtime import Runtime
from tests import factories
from tests.admin.importing import import_csv
from tests.staff_pages import csrf_for, sign_in

HEADER = "name,address_line1,address_line2,town,postcode,region,email,platform_contact_id,active"
GOOD_ROWS = [
    "Riverside Pharmacy,1 Quay St,,Leeds,ls1 5ab,B,,7001,yes",
    '"Smith, Jones & Co",2 Market St,"Unit 2, Floor 1",Edinburgh,EH1 1AA,A,smith@example.com,,',
    "Hill Chemist,3 Hill Rd,,Glasgow,G2 4BB,a,HILL@example.com,,no",
]


async def _count(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Pharmacy)) or 0


def _pharmacy_form(token: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": token,
        "name": "Wellbeing Pharmacy",
        "address_line1": "4 Park Row",
        "address_line2": "",
        "town": "Leeds",
        "postcode": "LS1 5AB",
        "region": "B",
        "email": "",
        "platform_contact_id": "7002",
        "active": "yes",
    }
    form.update(overrides)
    return form


# --- roles and CSRF ---------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PATIENT, Role.SUPPORT])
async def test_only_admins_may_open_admin_pages(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, role: Role
) -> None:
    patient = await factories.make_patient(session) if role is Role.PATIENT else None
    user = await factories.make_user(session, role, patient=patient)
    await session.commit()
    await sign_in(client, user)
    for path in (
        "/admin",
        "/admin/pharmacies",
        "/admin/pharmacies/new",
        "/admin/pharmacies/import",
        "/admin/prescribers",
        "/admin/regions",
    ):
        response = await client.get(path, headers={"accept": "text/html"})
        assert response.status_code == 403, path
    response = await client.post("/admin/pharmacies/new", data=_pharmacy_form("x"))
    assert response.status_code == 403
    assert await _count(session) == 0


async def test_admin_sees_every_admin_page(as_admin: httpx.AsyncClient) -> None:
    for path in (
        "/admin",
        "/admin/pharmacies",
        "/admin/pharmacies/new",
        "/admin/pharmacies/import",
        "/admin/prescribers",
        "/admin/prescribers/new",
        "/admin/regions",
        "/support",
    ):
        assert (await as_admin.get(path)).status_code == 200, path


@pytest.mark.parametrize("token", ["", "forged"])
async def test_forms_need_the_csrf_token(
    as_admin: httpx.AsyncClient, session: AsyncSession, token: str
) -> None:
    response = await as_admin.post("/admin/pharmacies/new", data=_pharmacy_form(token))
    assert response.status_code == 403
    response = await as_admin.post(
        "/admin/prescribers/new",
        data={"csrf_token": token, "full_name": "Dr X", "email": "x@example.com"},
    )
    assert response.status_code == 403
    response = await as_admin.post(
        "/admin/pharmacies/import",
        data={"csrf_token": token},
        files={"file": ("p.csv", f"{HEADER}\n{GOOD_ROWS[0]}\n".encode(), "text/csv")},
    )
    assert response.status_code == 403
    assert await _count(session) == 0
    assert await session.scalar(select(func.count()).select_from(Prescriber)) == 0


# --- pharmacies: forms ------------------------------------------------------------------


async def test_add_edit_deactivate_reactivate_a_pharmacy(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    response = await as_admin.post(
        "/admin/pharmacies/new", data=_pharmacy_form(token, postcode="ls15ab")
    )
    assert response.status_code == 303, response.text
    [pharmacy] = (await session.scalars(select(Pharmacy))).all()
    assert (pharmacy.postcode, pharmacy.platform_contact_id, pharmacy.active) == (
        "LS1 5AB",
        7002,
        True,
    )
    path = f"/admin/pharmacies/{pharmacy.id}"
    assert response.headers["location"] == f"{path}?done=pharmacy-added"

    response = await as_admin.post(path, data=_pharmacy_form(token, town="Bradford"))
    assert response.status_code == 303
    await session.refresh(pharmacy)
    assert pharmacy.town == "Bradford"

    response = await as_admin.post(f"{path}/active", data={"csrf_token": token, "active": "0"})
    assert response.status_code == 303
    await session.refresh(pharmacy)
    assert pharmacy.active is False
    listing = (await as_admin.get("/admin/pharmacies", params={"state": "inactive"})).text
    assert "Wellbeing Pharmacy" in listing
    listing = (await as_admin.get("/admin/pharmacies", params={"state": "active"})).text
    assert "Wellbeing Pharmacy" not in listing

    response = await as_admin.post(f"{path}/active", data={"csrf_token": token, "active": "1"})
    assert response.status_code == 303
    await session.refresh(pharmacy)
    assert pharmacy.active is True
    page = (await as_admin.get(response.headers["location"])).text
    assert "Pharmacy reactivated" in page


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"postcode": "NOT A CODE"}, "postcode", "Enter a UK postcode"),
        ({"name": ""}, "name", "Enter the pharmacy"),
        ({"region": "Z"}, "region", "is not configured"),
        ({"platform_contact_id": ""}, "platform_contact_id", "platform contact (branch) ID"),
        ({"platform_contact_id": "-4"}, "platform_contact_id", "positive whole number"),
        ({"platform_contact_id": "99999999999"}, "platform_contact_id", "positive whole number"),
        ({"region": "A", "platform_contact_id": ""}, "email", "sends prescriptions by email"),
        ({"email": "not-an-email"}, "email", "Enter an email address"),
        ({"town": "x" * 101}, "town", "At most 100"),
    ],
)
async def test_pharmacy_form_errors_keep_what_was_typed(
    as_admin: httpx.AsyncClient,
    session: AsyncSession,
    overrides: dict[str, str],
    field: str,
    message: str,
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    typed = _pharmacy_form(token, name="Typed <em>Name</em>", address_line2="Typed line 2")
    typed.update(overrides)
    response = await as_admin.post("/admin/pharmacies/new", data=typed)
    assert response.status_code == 422
    page = response.text
    assert f'id="{field}-error"' in page
    assert message in page
    if field != "name":
        assert 'value="Typed &lt;em&gt;Name&lt;/em&gt;"' in page
    assert 'value="Typed line 2"' in page
    assert "<em>Name</em>" not in page
    assert await _count(session) == 0


async def test_platform_contact_id_may_not_be_reused_in_a_region(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    await factories.make_pharmacy(session, "B", name="First", platform_contact_id=7002)
    await session.commit()
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    response = await as_admin.post("/admin/pharmacies/new", data=_pharmacy_form(token))
    assert response.status_code == 422
    assert "already has this platform contact ID" in response.text


async def test_html_in_pharmacy_names_is_escaped_everywhere(
    as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    pharmacy = await factories.make_pharmacy(session, "B", name=evil, town="Leeds")
    patient = await factories.make_patient(session)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    prescription = await factories.make_prescription(
        session, patient, prescriber, pharmacy_id=pharmacy.id, region="B", channel="erx"
    )
    await session.commit()
    pages = [
        "/admin/pharmacies",
        "/admin/pharmacies?q=leeds",
        f"/admin/pharmacies/{pharmacy.id}",
        f"/support/prescriptions/{prescription.id}",
    ]
    token = await csrf_for(as_admin, "/support")
    search = {"csrf_token": token, "q": str(prescription.id)}
    found = (await as_admin.post("/support/search", data=search)).text
    for path, page in [*[(p, (await as_admin.get(p)).text) for p in pages], ("search", found)]:
        assert "<script>alert" not in page, path
        assert "<img src=x" not in page, path
        assert "&lt;script&gt;alert(" in page, path
    # and in the import report
    token = await csrf_for(as_admin, "/admin/pharmacies/import")
    row = '"<script>alert(1)</script>",1 St,,Leeds,BAD,B,,7009,yes'
    response = await as_admin.post(
        "/admin/pharmacies/import",
        data={"csrf_token": token},
        files={"file": ("p.csv", f"{HEADER}\n{row}\n".encode(), "text/csv")},
    )
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


async def test_pharmacy_list_filters_by_region_and_search(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    await factories.make_pharmacy(session, "A", name="Thistle Pharmacy", town="Glasgow")
    await factories.make_pharmacy(session, "B", name="Rose Pharmacy", town="York")
    await session.commit()
    page = (await as_admin.get("/admin/pharmacies", params={"region": "a"})).text
    assert "Thistle Pharmacy" in page and "Rose Pharmacy" not in page
    page = (await as_admin.get("/admin/pharmacies", params={"q": "york"})).text
    assert "Rose Pharmacy" in page and "Thistle Pharmacy" not in page
    page = (await as_admin.get("/admin/pharmacies", params={"q": "%_\\'\""})).text
    assert "No pharmacies match" in page


# --- CSV import -------------------------------------------------------------------------


async def _import(
    client: httpx.AsyncClient, content: bytes, filename: str = "pharmacies.csv"
) -> httpx.Response:
    return await import_csv(client, content, filename)


async def test_import_a_good_file_imports_every_row(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    content = "\r\n".join([HEADER, *GOOD_ROWS, ""]).encode()
    response = await _import(as_admin, content)
    assert response.status_code == 200, response.text
    assert "3 added, 0 updated, 0 deactivated" in response.text
    found = {p.name: p for p in (await session.scalars(select(Pharmacy))).all()}
    assert set(found) == {"Riverside Pharmacy", "Smith, Jones & Co", "Hill Chemist"}
    assert found["Riverside Pharmacy"].postcode == "LS1 5AB"
    assert found["Smith, Jones & Co"].address_line2 == "Unit 2, Floor 1"
    assert found["Hill Chemist"].region == "A"
    assert found["Hill Chemist"].email == "hill@example.com"
    assert found["Hill Chemist"].active is False


async def test_import_with_one_bad_row_imports_nothing_and_says_why(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    bad = "Broken Pharmacy,5 Low St,,Leeds,NOPE,B,,7003,yes"
    content = "\n".join([HEADER, GOOD_ROWS[0], GOOD_ROWS[1], bad, GOOD_ROWS[2], ""]).encode()
    response = await _import(as_admin, content)
    assert response.status_code == 422
    page = response.text
    assert "Nothing was imported" in page
    assert "<tr><td>4</td><td>Broken Pharmacy</td>" in page
    assert "postcode: Enter a UK postcode" in page
    assert "1 of 4 rows" in page
    assert await _count(session) == 0


async def test_import_reports_each_kind_of_bad_row_by_line(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    await factories.make_pharmacy(session, "B", name="Existing", platform_contact_id=7100)
    await session.commit()
    rows = [
        HEADER,
        "No Contact,1 St,,Leeds,LS1 1AA,B,,,yes",  # line 2
        "No Email,1 St,,Edinburgh,EH1 1AA,A,,,yes",  # line 3
        '"Multi\nLine",1 St,,Leeds,LS1 1AB,B,,7101,yes',  # lines 4-5
        "Wrong Region,1 St,,Leeds,LS1 1AC,Q,,7102,yes",  # line 6
        "Too,Few,Columns",  # line 7
        "Taken Contact,1 St,,Leeds,LS1 1AD,B,,7100,yes",  # line 8
        "Twin,1 St,,Leeds,LS1 1AE,B,,7103,yes",  # line 9
        "Twin,1 St,,Leeds,LS1 1AE,B,,7104,maybe",  # line 10
        "",
    ]
    response = await _import(as_admin, "\n".join(rows).encode())
    assert response.status_code == 422
    page = response.text
    assert "<tr><td>2</td><td>No Contact</td>" in page
    assert "<tr><td>3</td><td>No Email</td>" in page
    assert "<tr><td>4</td>" not in page  # a quoted newline is one row, and it is fine
    assert "<tr><td>6</td><td>Wrong Region</td>" in page and "is not configured" in page
    assert "<tr><td>7</td>" in page and "has 3 columns" in page
    assert "<tr><td>8</td><td>Taken Contact</td>" in page and "already used by" in page
    assert "<tr><td>10</td><td>Twin</td>" in page
    assert "same pharmacy (name and postcode) as line 9" in page
    assert "active: Use yes or no" in page
    assert await _count(session) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"   \r\n", "The file is empty."),
        (HEADER.encode() + b"\n", "no pharmacies"),
        (b"name,town\nX,Y\n", "missing columns"),
        (HEADER.encode() + b",colour\n", "unknown columns"),
        (HEADER.encode() + b'\n"Unclosed,1 St,,Leeds,LS1 1AA,B,,7001,yes\n', "not valid CSV"),
        (
            HEADER.encode() + b"\nCaf\xe9,1 St,,Leeds,LS1 1AA,B,,7001,yes\n",
            "Line 2 is not valid UTF-8",
        ),
        (b"PK\x03\x04binary-xlsx", "spreadsheet file"),
        ("\ufeff".encode("utf-16-le") + HEADER.encode("utf-16-le"), "UTF-16"),
        (b"name\x00,town", "binary data"),
    ],
)
async def test_import_refuses_unreadable_files_clearly(
    as_admin: httpx.AsyncClient, session: AsyncSession, content: bytes, message: str
) -> None:
    response = await _import(as_admin, content)
    assert response.status_code == 422
    assert message in response.text
    assert "Nothing was imported" in response.text
    assert await _count(session) == 0


async def test_import_accepts_a_byte_order_mark(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    content = b"\xef\xbb\xbf" + "\r\n".join([HEADER, GOOD_ROWS[0]]).encode()
    response = await _import(as_admin, content)
    assert response.status_code == 200, response.text
    assert await _count(session) == 1


async def test_import_refuses_oversized_files(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    filler = (GOOD_ROWS[0] + "\n").encode()
    content = HEADER.encode() + b"\n" + filler * (MAX_IMPORT_BYTES // len(filler) + 10)
    response = await _import(as_admin, content)
    assert response.status_code in (413, 422)
    assert "larger than 2 MB" in response.text
    assert await _count(session) == 0


async def test_import_needs_a_file(as_admin: httpx.AsyncClient) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/import")
    response = await as_admin.post(
        "/admin/pharmacies/import",
        data={"csrf_token": token},
        files={"file": ("", b"", "application/octet-stream")},
    )
    assert response.status_code == 422
    assert "Choose a CSV file" in response.text


def test_postcodes_are_normalised() -> None:
    assert normalise_postcode("ls15ab") == "LS1 5AB"
    assert normalise_postcode(" EH1  1aa ") == "EH1 1AA"
    assert normalise_postcode("SW1A 1AA") == "SW1A 1AA"
    assert normalise_postcode("12345") is None
    assert normalise_postcode("LS1 5A") is None


# --- prescribers ------------------------------------------------------------------------

SECRETS = {
    "platform_email": "dr.new@platform.example.com",
    "platform_password": "s3cret-Platform-pw",
    "signing_pin": "482913",
}


async def test_prescriber_secrets_are_write_only(
    as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    token = await csrf_for(as_admin, "/admin/prescribers/new")
    form = {
        "csrf_token": token,
        "full_name": "Dr New",
        "email": "dr.new@example.com",
        "registration_number": "GMC-1234567",
        "active": "yes",
        **SECRETS,
    }
    response = await as_admin.post("/admin/prescribers/new", data=form, follow_redirects=True)
    assert response.status_code == 200
    assert "Prescriber added." in response.text
    for value in SECRETS.values():
        assert value not in response.text
    assert response.text.count(">set<") == 3
    [prescriber] = (await session.scalars(select(Prescriber))).all()
    box = db.secret_box
    assert prescriber.platform_email_encrypted not in response.text
    assert box.decrypt(prescriber.platform_email_encrypted or "") == SECRETS["platform_email"]
    assert box.decrypt(prescriber.platform_password_encrypted or "") == SECRETS["platform_password"]
    assert box.decrypt(prescriber.signing_pin_encrypted or "") == SECRETS["signing_pin"]

    # Blank keeps the stored values; a new PIN replaces only the PIN.
    path = f"/admin/prescribers/{prescriber.id}"
    stored = (prescriber.platform_email_encrypted, prescriber.platform_password_encrypted)
    response = await as_admin.post(
        path,
        data={
            **form,
            "full_name": "Dr Renamed",
            "platform_email": "",
            "platform_password": "",
            "signing_pin": "111222",
        },
        follow_redirects=True,
    )
    assert response.status_code == 200
    for value in (*SECRETS.values(), "111222"):
        assert value not in response.text
    await session.refresh(prescriber)
    assert prescriber.full_name == "Dr Renamed"
    assert (prescriber.platform_email_encrypted, prescriber.platform_password_encrypted) == stored
    assert box.decrypt(prescriber.signing_pin_encrypted or "") == "111222"

    listing = (await as_admin.get("/admin/prescribers")).text
    assert "Dr Renamed" in listing and "not set" not in listing
    for value in (*SECRETS.values(), "111222"):
        assert value not in listing

    # Clearing removes all three.
    response = await as_admin.post(
        path,
        data={
            **form,
            "platform_email": "",
            "platform_password": "",
            "signing_pin": "",
            "clear_credentials": "yes",
        },
    )
    assert response.status_code == 303
    await session.refresh(prescriber)
    assert not prescriber.has_platform_credentials
    assert (await as_admin.get(path)).text.count(">not set<") == 3


async def test_prescriber_form_errors_keep_typed_values_but_never_secrets(
    as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    session.add(
        Prescriber(full_name="Dr Taken", email="taken@example.com", registration_number="GMC-2")
    )
    await session.commit()
    token = await csrf_for(as_admin, "/admin/prescribers/new")
    response = await as_admin.post(
        "/admin/prescribers/new",
        data={
            "csrf_token": token,
            "full_name": "Dr <b>Typed</b>",
            "email": "TAKEN@example.com",
            "registration_number": "",
            "platform_email": "dr.new@platform.example.com",
            "platform_password": "s3cret-Platform-pw",
            "signing_pin": "12ab56",
        },
    )
    assert response.status_code == 422
    page = response.text
    assert 'value="Dr &lt;b&gt;Typed&lt;/b&gt;"' in page
    assert 'id="registration_number-error"' in page
    assert 'id="signing_pin-error"' in page and "exactly 6 digits" in page
    for value in ("dr.new@platform.example.com", "s3cret-Platform-pw", "12ab56"):
        assert value not in page
    assert await session.scalar(select(func.count()).select_from(Prescriber)) == 1

    response = await as_admin.post(
        "/admin/prescribers/new",
        data={
            "csrf_token": token,
            "full_name": "Dr Twin",
            "email": "TAKEN@example.com",
            "registration_number": "GMC-1",
        },
    )
    assert response.status_code == 422
    assert "Another prescriber already has this email" in response.text


async def test_unknown_ids_are_404(as_admin: httpx.AsyncClient) -> None:
    for path in (f"/admin/pharmacies/{uuid.uuid4()}", f"/admin/prescribers/{uuid.uuid4()}"):
        response = await as_admin.get(path, headers={"accept": "text/html"})
        assert response.status_code == 404


# --- regions ----------------------------------------------------------------------------


async def test_regions_page_shows_the_mapping_and_what_each_region_has(
    as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    await factories.make_pharmacy(session, "A")
    await factories.make_pharmacy(session, "B")
    await factories.make_pharmacy(session, "B", active=False, platform_contact_id=9)
    patient = await factories.make_patient(session)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    await factories.make_prescription(session, patient, prescriber, region="B", channel="erx")
    await session.commit()
    page = (await as_admin.get("/admin/regions")).text
    assert "<td>A</td>\n      <td>email</td>" in page
    assert "<td>B</td>\n      <td>erx</td>" in page
    assert "1 active</a>, 1 inactive" in page
    assert "draft 1" in page
    assert "RXROUTE_REGION_CHANNELS" in page
    assert "{&#34;A&#34;:&#34;email&#34;,&#34;B&#34;:&#34;erx&#34;}" in page


async def test_a_pharmacy_keeps_its_phone_and_hours_and_a_bad_phone_is_named(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    refused = await as_admin.post(
        "/admin/pharmacies/new", data=_pharmacy_form(token, phone="ring the bell")
    )
    assert refused.status_code == 422
    assert "Enter a UK phone number" in refused.text
    assert 'value="ring the bell"' in refused.text  # what was typed stays in the form

    saved = await as_admin.post(
        "/admin/pharmacies/new",
        data=_pharmacy_form(token, phone="0113 496 0000", opening_hours="Mon to Sat 8:30 to 19:00"),
    )
    assert saved.status_code == 303, saved.text
    pharmacy = await session.scalar(select(Pharmacy).where(Pharmacy.platform_contact_id == 7002))
    assert pharmacy is not None
    assert (pharmacy.phone, pharmacy.opening_hours) == ("0113 496 0000", "Mon to Sat 8:30 to 19:00")
    edit_page = await as_admin.get(f"/admin/pharmacies/{pharmacy.id}")
    assert 'value="0113 496 0000"' in edit_page.text
