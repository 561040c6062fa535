"""The formulary: the medicine lines prescribers pick from (admins import and deactivate)."""
