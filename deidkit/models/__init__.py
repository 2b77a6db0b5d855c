"""Networks only: no file loading, no data sets."""
