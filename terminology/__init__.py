"""CodeSystems, ValueSets and ConceptMaps of the programme, and the terminology service (no I/O)."""
