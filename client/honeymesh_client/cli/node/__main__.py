"""``python -m honeymesh_client.cli.node``, as the old module's ``__main__`` guard allowed."""

import sys

from . import main

sys.exit(main())
