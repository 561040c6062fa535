"""Prescribers as the API shows them: ids and external ids, never platform credentials."""
