"""``python -m service``: the server process (``temper serve`` runs it as a child)."""

from service.core.extras import exit_if_extra_missing

try:
    from service.ops.cli import main
except ModuleNotFoundError as error:
    exit_if_extra_missing(error, "the server", "server")
    raise

raise SystemExit(main())
