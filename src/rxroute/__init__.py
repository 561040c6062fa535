"""rxroute: route prescriptions to pharmacies by region, and track them until dispensed."""

__version__ = "0.1.0"
