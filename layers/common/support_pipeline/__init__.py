"""Chatwoot support pipeline: the shared package behind every Lambda function.

All logic lives here and is testable without Lambda; the handlers in ``functions/`` only parse
the event, call into this package and shape the answer.
"""

__version__ = "0.1.0"
