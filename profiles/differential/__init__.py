"""Our profiles as authored: StructureDefinition differentials, input of ``profiles.generate``."""
