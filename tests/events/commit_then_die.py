"""A process that queues a prescription and is SIGKILLed right after (or right before) its
transaction commits: ``python -m tests.events.commit_then_die before|after``.

Prints the prescription's id first. Settings come from the environment (the test sets
``RXROUTE_DATABASE_URL``); the endpoint is already in the database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from rxroute.config import Settings
from rxroute.runtime import start_runtime
from tests.events.conftest import ready_prescription
from tests.factories import queue_delivery


async def main(when: str) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    runtime = await start_runtime(settings, settings.database_url)
    async with runtime.sessionmaker() as session:
        transaction = await session.begin()
        prescription = await ready_prescription(session, runtime)
        print(prescription.id, flush=True)
        await queue_delivery(session, prescription.id)
        if when == "after":
            await transaction.commit()
        # No rollback, no cleanup, no goodbye: the process is gone.
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
