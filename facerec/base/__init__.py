"""The base layer below every other: collectives, option records and Lightning internals."""
