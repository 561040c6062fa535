"""Patients as integrating platforms manage them: upsert by the platform's own ID."""
