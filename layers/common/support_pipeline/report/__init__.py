"""The weekly support health report: SLA adherence, escalations, volume, CSAT, drafts and the
pipeline's own health, each beside the previous period and the policy's targets, and beside
Chatwoot's own numbers. docs/report.md explains every number and the JSON schema."""
