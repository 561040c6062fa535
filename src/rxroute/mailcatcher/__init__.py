"""A local SMTP catcher with a web view, so the Region A demo needs no real mail server."""

from rxroute.mailcatcher.server import MailCatcher, run_mailcatcher
from rxroute.mailcatcher.store import Attachment, MessageStore, StoredMessage

__all__ = ["Attachment", "MailCatcher", "MessageStore", "StoredMessage", "run_mailcatcher"]
