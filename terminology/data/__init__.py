"""Generated R4 core terminology (a package only so that setuptools ships the data file)."""
