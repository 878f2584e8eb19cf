"""``python -m facerec.data.synthetic``: the ``facerec synth`` command."""

import sys

from facerec.data.synthetic.cli import main

sys.exit(main())
