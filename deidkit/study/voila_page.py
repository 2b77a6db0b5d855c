"""What the form's kernel knows about the Voilà page it runs in: whether it runs in Voilà at all, and the
parameters of the page's URL (``?participant=p07``), which Voilà hands to the kernel in its environment.
"""

from __future__ import annotations

import os


def running_in_voila() -> bool:
    """True inside a Voilà kernel (Voilà sets ``SERVER_SOFTWARE=voila/<version>`` for the page's kernel)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("voila")


def query_parameter(name: str, default: str = "") -> str:
    """A parameter of the Voilà page's URL (``...?participant=p07``); ``default`` outside Voilà."""
    from urllib.parse import parse_qs

    values = parse_qs(os.environ.get("QUERY_STRING", "")).get(name)
    return values[0] if values else default
