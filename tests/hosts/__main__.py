"""Write a generated host tree, for ``nixmox doctor --host-root``.

    python -m tests.hosts --out DIR [--variant NAME]

Without ``--variant``: the clean Ryzen 9 5950X + RTX 3060 host. The variants
(each breaks one passthrough check) are listed by ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.hosts import VARIANTS, HostSpec, variant, write_host


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="directory to write (must not exist)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="break one thing")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} exists already")
    write_host(out, variant(args.variant) if args.variant else HostSpec())
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
