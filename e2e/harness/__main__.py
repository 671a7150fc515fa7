"""``python -m e2e.harness {build,up,down,status}`` (see e2e.harness.cli)."""

import sys

from e2e.harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
