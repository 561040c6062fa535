from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class EventEndpoint(IdMixin, TimestampMixin, Base):
    """Where status events are delivered.

    The default endpoint (``is_default``, at most one row) takes its URL and secret from
    ``RXROUTE_EVENTS_URL``/``RXROUTE_EVENTS_SECRET`` at delivery time, so the row stores
    neither; it receives events only while the URL is set. Endpoints added in admin store
    their URL and their secret, encrypted with ``RXROUTE_ENCRYPTION_KEYS``.

    ``event_types`` filters what the endpoint receives (empty: every type).
    ``failing_since`` is when its current run of failed attempts began (empty once an
    attempt succeeds); an endpoint failing for long is flagged on the support and admin
    pages, and its events wait for it rather than being dropped.
    """

    __tablename__ = "event_endpoints"
    __table_args__ = (
        Index(
            "uq_event_endpoints_one_default",
            "is_default",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str | None] = mapped_column(String(2000), default=None)
    secret_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    #: A label for people ("Platform staging"), never sent anywhere.
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types
