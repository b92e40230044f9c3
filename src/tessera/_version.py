"""The version of Tessera (its own module, so the engine never imports the package facade)."""

__version__ = "0.1.0"
