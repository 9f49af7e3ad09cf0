from __future__ import annotations

import sys

from bottle.cli import main

sys.exit(main())
