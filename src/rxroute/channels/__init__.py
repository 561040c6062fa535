"""Delivery channels: ``email`` (Region A) and ``erx`` (Region B)."""
