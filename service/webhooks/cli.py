"""``python -m service webhook-secret TENANT``: print the secret a tenant's webhook receivers
verify notifications with (:mod:`service.webhooks.signing`), for the operator to hand over."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from service.core.settings import Settings, SettingsError
from service.core.settings_flags import settings_parser
from service.core.tenancy import check_tenant_name
from service.webhooks.signing import read_master_key, tenant_secret


def build_parser() -> argparse.ArgumentParser:
    parser = settings_parser(
        prog="tempering-server webhook-secret",
        description="Print TENANT's webhook signing secret, derived from the master key in"
        " TEMPERING_WEBHOOK_SECRET_FILE. Hand it to the tenant over a channel you trust.",
    )
    parser.add_argument("tenant", help="tenant id, as in the API keys file")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_tenant_name(args.tenant)
        settings = Settings.load(os.environ, args)
        if settings.webhook_secret_file is None:
            raise SettingsError("webhooks need TEMPERING_WEBHOOK_SECRET_FILE (the master key)")
        key = read_master_key(settings.webhook_secret_file)
    except (SettingsError, ValueError) as exc:
        print(f"tempering: {exc}", file=sys.stderr)
        return 2
    print(tenant_secret(key, args.tenant))
    return 0
