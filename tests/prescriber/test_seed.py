"""The seed: the sample formulary and the demo prescriber's login."""

from __future__ import annotations

import httpx
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.passwords import verify_password
from rxroute.formulary.sample import sample_medicines
from rxroute.models import FormularyItem, Prescriber, PrescriptionItem, Role, User
from rxroute.runtime import Runtime
from rxroute.seed import data
from rxroute.seed.service import seed_demo
from tests.auth.helpers import post_login


async def _demo_prescriber(session: AsyncSession) -> User | None:
    return await session.scalar(select(User).where(User.email == data.DEMO_PRESCRIBER_EMAIL))


async def test_seed_creates_the_demo_prescriber_and_the_sample_formulary(
    session: AsyncSession, db: Runtime, client: httpx.AsyncClient
) -> None:
    await seed_demo(session, db.secret_box)
    user = await _demo_prescriber(session)
    assert user is not None
    assert user.role == Role.PRESCRIBER.value and user.active
    assert verify_password(user.password_hash, data.DEMO_PASSWORD)
    linked = await session.get(Prescriber, user.prescriber_id)
    assert linked is not None and linked.email == data.prescribers()[0].email
    lines = list(await session.scalars(select(FormularyItem)))
    expected = {(m.description, m.quantity, m.directions, m.dmd_vpid) for m in sample_medicines()}
    assert {
        (i.description, i.default_quantity, i.default_directions, i.dmd_vpid) for i in lines
    } == expected
    assert all(line.active for line in lines)
    # The demo's prescriptions are written from the same medicines.
    prescribed = set(await session.scalars(select(PrescriptionItem.description).distinct()))
    assert prescribed and prescribed <= {m.description for m in sample_medicines()}
    await session.commit()
    # The login works and lands on the prescriber's pages, listing what Dr Hartfield wrote.
    signed_in = await post_login(client, data.DEMO_PRESCRIBER_EMAIL, data.DEMO_PASSWORD)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/prescriber"
    home = await client.get("/prescriber")
    assert home.status_code == 200
    assert "Writing as Dr Alice Hartfield" in home.text
    assert "/prescriber/prescriptions/" in home.text


async def test_an_older_demo_database_gets_them_on_the_next_seed(
    session: AsyncSession, db: Runtime
) -> None:
    await seed_demo(session, db.secret_box)
    await session.execute(delete(User).where(User.email == data.DEMO_PRESCRIBER_EMAIL))
    await session.execute(delete(FormularyItem))
    again = await seed_demo(session, db.secret_box)
    assert not again.created
    assert await _demo_prescriber(session) is not None
    assert len(list(await session.scalars(select(FormularyItem)))) == len(sample_medicines())
    # And once more changes nothing: an admin's own formulary is left alone.
    await session.execute(delete(FormularyItem).where(FormularyItem.dmd_vpid.is_(None)))
    await seed_demo(session, db.secret_box)
    assert len(list(await session.scalars(select(FormularyItem)))) == len(sample_medicines()) - 1
