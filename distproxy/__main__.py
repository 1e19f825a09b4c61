"""Allow ``python -m distproxy``."""

from distproxy.cli import main

raise SystemExit(main())
