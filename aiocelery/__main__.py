"""``python -m aiocelery``."""

import sys

from aiocelery.cli import main

sys.exit(main())
