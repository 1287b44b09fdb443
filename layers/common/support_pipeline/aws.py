"""boto3 clients with explicit timeouts and retry modes.

Clients are created once per process and injected; tests pass moto-backed ones. The standard
``AWS_ENDPOINT_URL`` variable points every client at the local stack.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# Ingest must answer Chatwoot inside its 5 s budget: two attempts of at most 0.5 s connect +
# 1.0 s read plus one short backoff stay under about 3.5 s in the worst case.
INGEST_CONFIG = Config(
    connect_timeout=0.5,
    read_timeout=1.0,
    retries={"total_max_attempts": 2, "mode": "standard"},
)

# The processor has minutes, and SQS redelivery behind it; adaptive mode smooths throttling.
PROCESSOR_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"total_max_attempts": 4, "mode": "adaptive"},
)

# Bedrock: a Converse call must end inside the processor's 30 s; the queue does the retrying.
BEDROCK_CONFIG = Config(
    connect_timeout=5, read_timeout=20, retries={"total_max_attempts": 2, "mode": "standard"}
)

# Ops commands are interactive: fail fast but tolerate a slow endpoint.
CLI_CONFIG = Config(
    connect_timeout=3, read_timeout=20, retries={"total_max_attempts": 3, "mode": "standard"}
)


def client(service: str, config: Config, region_name: str | None = None) -> Any:
    """Create a boto3 client for ``service`` with ``config``."""
    return boto3.session.Session().client(service, config=config, region_name=region_name)  # type: ignore[call-overload]


def resource(service: str, config: Config, region_name: str | None = None) -> Any:
    """Create a boto3 resource (DynamoDB tables) for ``service`` with ``config``."""
    return boto3.session.Session().resource(service, config=config, region_name=region_name)  # type: ignore[call-overload]
