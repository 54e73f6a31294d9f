"""Tollgate's shared library: contracts, settings, logging, db, outbox, bus. No business rules."""
