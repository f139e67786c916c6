"""Our StructureDefinitions (differential + generated snapshot), written by ``profiles.generate``."""
