"""The totesys source as a local stand-in: schema, seeding from the real snapshot, simulated traffic."""
