"""The curated list of accepted pharmacies, and the patient's search over it."""
