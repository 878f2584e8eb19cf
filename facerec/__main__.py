"""``python -m facerec`` is the same as the ``facerec`` command."""

from facerec.cli import main

raise SystemExit(main())
