"""Operator and developer tooling for the support pipeline: the `support-pipeline` CLI, the
local stack on moto, the fake Chatwoot and the Lambda shims.

Installed by pyproject.toml for people, never shipped in the Lambda layer: production runs only
`support_pipeline` (layers/common). This package may import `support_pipeline`; the reverse is
never allowed.
"""
