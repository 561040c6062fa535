"""Support console: find a prescription, see what happened, act on it."""
