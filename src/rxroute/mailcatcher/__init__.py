"""A local SMTP catcher with a web view, so the Region A demo needs no real mail server.

It can also refuse or lose the next messages on request (``faults``), to stage failures.
"""

from rxroute.mailcatcher.faults import FailurePlan
from rxroute.mailcatcher.server import MailCatcher, run_mailcatcher
from rxroute.mailcatcher.store import Attachment, MessageStore, StoredMessage

__all__ = [
    "Attachment",
    "FailurePlan",
    "MailCatcher",
    "MessageStore",
    "StoredMessage",
    "run_mailcatcher",
]
