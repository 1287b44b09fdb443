"""WeeklyReportFunction: every Monday morning, last week's support report to S3 and SNS."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from support_pipeline import deadline
from support_pipeline.report.weekly import WeeklyReport, build_weekly_report

logger = Logger(service="weekly-report")
_report: WeeklyReport | None = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _report
    if _report is None:
        _report = build_weekly_report()
    with deadline.running_until(deadline.from_lambda_context(context)):
        return _report.run(event if isinstance(event, dict) else {})
