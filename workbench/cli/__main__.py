"""``python -m workbench.cli``: the ``workbench`` command."""

import sys

from workbench.cli import main

if __name__ == "__main__":  # importing this module (pkgutil.walk_packages) runs nothing
    sys.exit(main())
