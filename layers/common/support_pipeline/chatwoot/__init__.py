"""Everything that knows Chatwoot's wire formats: webhook signatures, payloads, the REST API."""
