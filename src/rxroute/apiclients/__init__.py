"""Service accounts of integrating platforms: scoped API keys (``Bearer rxr_...``)."""
