"""signconsole: a terminal training console for continuous sign language recognition."""

__version__ = "0.1.0"
