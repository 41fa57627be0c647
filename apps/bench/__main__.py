"""``python -m vj_apps.bench``: the same as ``vj-bench``."""

from .cli import main

raise SystemExit(main())
