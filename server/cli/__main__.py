"""`python -m memlsp.server.cli`: what editors and tests start."""

from memlsp.server.cli.commands import main

raise SystemExit(main())
