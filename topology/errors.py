"""The one error a bad topology value raises. Its own module so that model.py and the
modules model.py imports (istio.py) can all raise it without importing each other."""


class TopologyError(ValueError):
    """A configuration value is out of range; the message names the key."""
