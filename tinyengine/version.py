"""TinyEngine's version (core layer: imported by the report, the project stamp and the API)."""
__version__ = "0.1.0"
