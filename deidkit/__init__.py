"""deidkit: a reproducible study kit for face de-identification."""

__version__ = "0.1.0"
