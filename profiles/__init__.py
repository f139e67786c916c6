"""StructureDefinitions of the programme and the profile validator (no I/O)."""
