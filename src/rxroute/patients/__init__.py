"""Patients as the integrating platform manages them (by its own ``external_id``)."""
