"""syncagent: replicate a retail back office to its sales channels, crash-safely."""

__version__ = "0.1.0"
