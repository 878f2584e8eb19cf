"""The base layer below every other (with ``facerec.errors`` and ``facerec.io`` at the package
root): collectives (``distributed``), option records (``options``) and every use of Lightning
internals (``lightning_compat``)."""
