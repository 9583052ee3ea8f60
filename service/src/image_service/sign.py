"""Print a signed rendition URL: `python -m image_service.sign --help`.

The secret is read from an environment variable or a file (the same references the tenants file
uses), never from the command line, so it stays out of shell history and `ps`.
"""

from __future__ import annotations

import argparse
import os
import sys

from image_service.errors import ConfigError, DomainError
from image_service.options import parse_options, split_query
from image_service.signing import signed_url
from image_service.tenants import resolve_secret_ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_service.sign", description=__doc__)
    parser.add_argument("--base", default="http://127.0.0.1:8080", help="scheme://host:port")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--id", required=True, dest="image_id", help="the image id (sha256)")
    parser.add_argument("--secret", required=True, help="env:NAME or file:/path")
    parser.add_argument("query", nargs="?", default="", help="options, e.g. 'w=400&format=webp'")
    args = parser.parse_args(argv)
    try:
        secret = resolve_secret_ref(args.secret, os.environ)
        options, _ = parse_options(split_query(args.query), max_dimension=65_535)
    except (ConfigError, DomainError) as exc:
        print(f"sign: {exc}", file=sys.stderr)
        return 2
    print(signed_url(args.base.rstrip("/"), secret, args.tenant, args.image_id, options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
