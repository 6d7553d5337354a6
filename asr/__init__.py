"""A small, fast attention-based speech recogniser."""
__version__ = "0.1.0"
