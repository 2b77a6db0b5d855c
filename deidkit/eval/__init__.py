"""Evaluation: identification (CMC, rank of the true identity), verification, image quality."""
