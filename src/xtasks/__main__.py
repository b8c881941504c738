"""``python -m xtasks``: the same as the ``xtasks`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
