"""``python -m vj_apps.webcam``: the same as ``vj-webcam``."""

from .cli import main

raise SystemExit(main())
