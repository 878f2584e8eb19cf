"""``python -m facerec`` is the same as the ``facerec`` command."""

import sys

from facerec.cli import main

sys.exit(main())
