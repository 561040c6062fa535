"""Housekeeping jobs that keep the queue and tables healthy."""
