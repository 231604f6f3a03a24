"""The shell that wires the components: CLI, settings, the bus, metrics/logging, HTTP app."""

__version__ = "0.1.0"

__all__ = ["__version__"]
