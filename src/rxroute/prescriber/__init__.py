"""A prescriber's pages: the prescriptions they wrote, patient search, writing a draft."""
