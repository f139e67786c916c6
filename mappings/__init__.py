"""Pure transforms: questionnaire scoring, wearable imports, national-profile shaping (no I/O)."""
