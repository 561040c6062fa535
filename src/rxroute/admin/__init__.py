"""Admin: accepted pharmacies, prescribers and their platform credentials, region routing."""
