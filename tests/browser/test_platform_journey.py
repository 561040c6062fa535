"""Issue 11's journey in a real browser: a platform puts a patient in and invites them by
API, the demo prescriber writes their prescription, the patient sets a password from the
invitation email and sends it, the pharmacy dispenses it, and the patient's status emails
are in the mail catcher."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, expect
from sqlalchemy import select

from rxroute.apiclients.scopes import Scope
from rxroute.mailcatcher.store import StoredMessage
from rxroute.models import Patient, Prescription
from rxroute.seed import data
from tests.apiclients.helpers import bearer, make_api_key
from tests.browser.conftest import Shots, Stack
from tests.browser.test_journey import LIVE_TIMEOUT, _desktop_page, _patient_page, _send
from tests.invitation_mail import token_in

PATIENT_ID = "pt_browser_1"
PATIENT_EMAIL = "imogen.invited@example.com"
ORLISTAT = "Orlistat 120mg capsules"


async def _put_patient_and_invite(stack: Stack, key: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url, headers=bearer(key)) as api:
        upsert = await api.put(
            f"/api/v1/patients/{PATIENT_ID}",
            json={
                "given_name": "Imogen",
                "family_name": "Invitedfield",
                "date_of_birth": "1990-05-17",
                "gender": "female",
                "email": PATIENT_EMAIL,
                "phone": "+44 7700 900456",
                "address": {
                    "line1": "2 Example Road",
                    "line2": "",
                    "city": "Leeds",
                    "postcode": "LS2 7EE",
                    "country": "GB",
                },
                "region": "B",
            },
        )
        assert upsert.status_code == 201, upsert.text
        invite = await api.post(f"/api/v1/patients/{PATIENT_ID}/invite")
        assert invite.status_code == 202, invite.text


async def _messages_to(stack: Stack, address: str, subject: str) -> list[StoredMessage]:
    return [
        message
        for message in stack.mail.store.all()
        if address in message.envelope_to and subject in message.subject
    ]


async def _wait_for_mail(stack: Stack, page: Page, subject: str) -> StoredMessage:
    for _ in range(150):
        found = await _messages_to(stack, PATIENT_EMAIL, subject)
        if found:
            return found[-1]
        await page.wait_for_timeout(200)
    raise AssertionError(f"no email {subject!r} to the patient in the mail catcher")


async def _prescriber_writes(browser: Any, stack: Stack) -> None:
    context = await browser.new_context(base_url=stack.url)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    await page.goto("/login")
    await page.get_by_label("Email").fill(data.DEMO_PRESCRIBER_EMAIL)
    await page.get_by_label("Password").fill(data.DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/prescriber$"))
    await page.get_by_label("Find a patient to write for").fill("invitedfield")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="Write a prescription").first.click()
    option = page.locator("#medicine-0 option", has_text=ORLISTAT)
    value = await option.get_attribute("value")
    assert value
    await page.locator("#medicine-0").select_option(value)
    await expect(page.locator("#quantity-0")).to_have_value("84 capsules")
    await page.get_by_role("button", name="Write prescription", exact=True).last.click()
    await expect(page.locator("#written-notice")).to_contain_text("Draft written.")
    await context.close()


async def _draft_of_the_patient(stack: Stack) -> uuid.UUID:
    async with stack.runtime.sessionmaker() as session:
        found = await session.scalar(
            select(Prescription.id)
            .join(Patient, Patient.id == Prescription.patient_id)
            .where(Patient.external_id == PATIENT_ID, Prescription.status == "draft")
        )
    assert found is not None, "the prescriber's draft is not there"
    return found


async def test_prescriber_writes_invited_patient_sends_pharmacy_dispenses(
    browser: Any, stack: Stack, shots: Shots
) -> None:
    async with stack.runtime.sessionmaker() as session:
        key = await make_api_key(session, Scope.PATIENTS_WRITE, name="browser-platform")
    await _put_patient_and_invite(stack, key)
    await _prescriber_writes(browser, stack)
    prescription_id = await _draft_of_the_patient(stack)

    # The patient opens the invitation, sets a password and lands on their prescriptions.
    page = await _patient_page(browser, stack)
    invitation = await _wait_for_mail(stack, page, "set your password")
    await page.goto(f"/welcome/{token_in(invitation)}")
    await page.get_by_label("Password", exact=True).fill("a long new password 42")
    await page.get_by_label("Password again").fill("a long new password 42")
    await page.get_by_role("button", name="Set password and sign in").click()
    await expect(page).to_have_url(re.compile(r"/prescriptions$"))
    await expect(page.locator("main")).to_contain_text(ORLISTAT)

    name = await _send(page, stack, prescription_id, "B", "leeds", shots)
    status = page.locator("#status")
    await expect(status).to_have_text("Signed: your pharmacy can see it", timeout=LIVE_TIMEOUT)
    sent = await _wait_for_mail(stack, page, "sent to your pharmacy")
    assert sent.text_body is not None and name in sent.text_body

    # The pharmacy's side, on the platform's sandbox: open it, dispense it.
    reference = (await stack.prescription(prescription_id)).provider_prescription_id
    assert reference
    # The patient's page quotes the platform's own ID: the one the pharmacy sees.
    await expect(page.locator("#rx-ref")).to_have_text(reference, timeout=LIVE_TIMEOUT)
    pharmacy = await _desktop_page(browser)
    await pharmacy.goto(f"{stack.sandbox.url}/mailbox")
    await pharmacy.get_by_role("link", name=f"Open prescription {reference}").click()
    await pharmacy.get_by_label("Pharmacy group").select_option("All Other Pharmacies")
    await pharmacy.get_by_role("button", name="Mark as dispensed").click()

    await expect(status).to_have_text("Dispensed", timeout=LIVE_TIMEOUT)
    dispensed = await _wait_for_mail(stack, page, "has been dispensed")
    assert dispensed.text_body is not None and ORLISTAT not in dispensed.subject
    # The catcher's own page lists both, as a newcomer would look for them.
    catcher = await _desktop_page(browser)
    await catcher.goto(stack.mail.web_url)
    await expect(catcher.locator("body")).to_contain_text("sent to your pharmacy")
    await expect(catcher.locator("body")).to_contain_text("has been dispensed")
