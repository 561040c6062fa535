"""Prescriptions: their lifecycle, history, sending and status."""
