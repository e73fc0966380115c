"""Local-only tooling, never deployed (.funcignore leaves this package out): the stand-in totesys source
(`source`: DDL, the shipped snapshot, scaling, simulated traffic), the embedded stack (`stack`: PostgreSQL
from pgserver + Azurite) and the demo (`demo`). The runtime code under shared/ never imports it."""
