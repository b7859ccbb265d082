"""koembed's version: a leaf module, so that index manifests can record it without importing the package root."""

__version__ = "0.1.0"
