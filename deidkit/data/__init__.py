"""Data: where images come from (LFW, generic folders), manifests and protocols, detection and alignment."""
