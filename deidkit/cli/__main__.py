"""``python -m deidkit.cli ...``: the same command line as ``deidkit``."""

import sys

from deidkit.cli import main

sys.exit(main())
