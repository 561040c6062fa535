"""Inbound webhooks from the Region B platform."""
