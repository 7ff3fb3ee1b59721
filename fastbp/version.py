"""fastbp's version, written once: the package, its saved files and pyproject.toml's
dynamic version read it from here."""
__version__ = "0.2.0"
