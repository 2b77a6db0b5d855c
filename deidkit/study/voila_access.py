"""``python -m deidkit.study.voila_access ...``: Voilà with tornado's access log (one line per HTTP request:
time, status, method, path, client, duration) written to stderr, which :func:`deidkit.study.serve.start_server`
appends to the study's access log. Voilà itself leaves that logger without a handler."""

import logging
import sys

if __name__ == "__main__":
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s access %(message)s"))
    access = logging.getLogger("tornado.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    from voila.app import main

    sys.exit(main())
