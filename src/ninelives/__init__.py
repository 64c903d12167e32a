"""ninelives: high availability for any TCP or HTTP service, in one package."""

__version__ = "0.1.0"
