"""``python -m facerec.data.synthetic``: the ``facerec synth`` command."""

from facerec.data.synthetic.cli import main

raise SystemExit(main())
