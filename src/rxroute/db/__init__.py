"""Database plumbing: the embedded server, the engine and sessions, the declarative base."""
