"""`support-pipeline report`: the weekly report for any week or dates, with your credentials.

For local use and backfills. Finds the table, bucket and DLQ from ``--stack`` outputs, else from
``CONVERSATIONS_TABLE``, ``PAYLOAD_BUCKET`` and ``EVENTS_DLQ_URL`` (the local stack prints
them). Writes the four files to ``--out`` (default ``reports/<period>/``); ``--upload`` also
puts them under ``reports/<period>/`` in the payload bucket, as the weekly function does, and
``--announce`` publishes the summary on the report topic.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from botocore.config import Config

from support_pipeline import aws
from support_pipeline.config import SupportSettings
from support_pipeline.report.builder import ReportBuilder
from support_pipeline.report.health import HealthReader
from support_pipeline.report.period import Period, PeriodError
from support_pipeline.report.publish import announce, presigned_link, upload, write_folder
from support_pipeline.report.settings import ReportSettings
from support_pipeline.store import ConversationStore


class ReportUsageError(Exception):
    """Something the operator can fix."""


@dataclass(frozen=True)
class Where:
    table: str
    bucket: str
    dlq_url: str
    topic_arn: str


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report",
        parents=[where],
        help="the support report of a week (default: the last full week) or of dates",
    )
    when = report.add_mutually_exclusive_group()
    when.add_argument("--week", help="an ISO week, e.g. 2026-W39 (in the policy's time zone)")
    when.add_argument("--from", dest="date_from", help="first local day, YYYY-MM-DD (with --to)")
    report.add_argument("--to", dest="date_to", help="last local day, YYYY-MM-DD, included")
    report.add_argument("--out", help="folder for the files (default: reports/<period>/)")
    report.add_argument("--policy", help="a support policy YAML (default: the deployed one)")
    report.add_argument("--account", action="append", help="only this account; repeatable")
    report.add_argument(
        "--upload", action="store_true", help="also store the files in the payload bucket"
    )
    report.add_argument(
        "--announce", action="store_true", help="with --upload: publish on the report topic"
    )


def locate(stack: str | None, region: str | None) -> Where:
    if stack:
        cloudformation = aws.client("cloudformation", aws.CLI_CONFIG, region_name=region)
        try:
            found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        except Exception as exc:
            raise ReportUsageError(f"cannot read stack {stack!r}: {exc}") from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
        if "ConversationsTableName" not in outputs:
            raise ReportUsageError(f"stack {stack!r} has no output ConversationsTableName")
        return Where(
            outputs["ConversationsTableName"],
            outputs.get("PayloadBucketName", ""),
            outputs.get("EventsDLQUrl", ""),
            outputs.get("ReportTopicArn", ""),
        )
    table = os.environ.get("CONVERSATIONS_TABLE", "")
    if not table:
        raise ReportUsageError(
            "say which pipeline: --stack NAME, or CONVERSATIONS_TABLE "
            "(`support-pipeline local` prints it)"
        )
    return Where(
        table,
        os.environ.get("PAYLOAD_BUCKET", ""),
        os.environ.get("EVENTS_DLQ_URL", ""),
        os.environ.get("REPORT_TOPIC_ARN", ""),
    )


def _policy(path: str | None) -> Any:
    from support_pipeline.policy import PolicyError, load_policy, parse_policy_text

    try:
        if path:
            return parse_policy_text(Path(path).read_text(encoding="utf-8"), path)
        return load_policy(os.environ.get("SUPPORT_POLICY_PARAM", "").strip() or None)
    except (PolicyError, OSError) as error:
        raise ReportUsageError(str(error)) from None


def _chatwoot() -> tuple[Any, str]:
    """A REST client from CHATWOOT_BASE_URL and CHATWOOT_API_TOKEN, or none."""
    from support_pipeline.chatwoot.client import ChatwootClient

    url = os.environ.get("CHATWOOT_BASE_URL", "").strip()
    token = os.environ.get("CHATWOOT_API_TOKEN", "")
    if not url:
        return None, ""
    local_http = os.environ.get("CHATWOOT_ALLOW_HTTP", "").lower() == "true"
    if not url.startswith("https://") and not (url.startswith("http://") and local_http):
        raise ReportUsageError("CHATWOOT_BASE_URL must be https:// (the token travels with it)")
    if not token:
        raise ReportUsageError("CHATWOOT_BASE_URL needs CHATWOOT_API_TOKEN")
    return ChatwootClient(url, lambda: token), url


def period_from(args: argparse.Namespace, policy: Any, now: float) -> Period:
    try:
        if args.week:
            return Period.iso_week(args.week, policy.zone)
        if args.date_from or args.date_to:
            if not (args.date_from and args.date_to):
                raise ReportUsageError("--from and --to go together")
            return Period.between(args.date_from, args.date_to, policy.zone)
    except PeriodError as error:
        raise ReportUsageError(str(error)) from None
    return Period.last_full_week(now, policy.zone)


def run_report(args: argparse.Namespace, out: TextIO) -> int:
    where = locate(args.stack, args.region)
    if args.announce and not args.upload:
        raise ReportUsageError("--announce needs --upload (the announcement links the upload)")
    if args.upload and not where.bucket:
        raise ReportUsageError("--upload needs the payload bucket (--stack or PAYLOAD_BUCKET)")
    policy = _policy(args.policy)
    client, url = _chatwoot()
    period = period_from(args, policy, time.time())
    config = aws.CLI_CONFIG
    settings = ReportSettings(
        conversations_table=where.table,
        payload_bucket=where.bucket,
        report_topic_arn=where.topic_arn,
        events_dlq_url=where.dlq_url,
        support=SupportSettings(chatwoot_base_url=url),
    )
    health = HealthReader(
        aws.client("cloudwatch", config, region_name=args.region),
        aws.client("sqs", config, region_name=args.region),
        where.dlq_url,
    )
    store = ConversationStore(
        aws.resource("dynamodb", config, region_name=args.region), where.table
    )
    report = ReportBuilder(store, policy, settings, health, client).build(period, args.account)
    folder = Path(args.out) if args.out else Path("reports") / report.label
    for path in write_folder(report, folder):
        out.write(f"wrote {path}\n")
    link = None
    if args.upload:
        s3 = aws.client(
            "s3", config.merge(Config(signature_version="s3v4")), region_name=args.region
        )
        keys = upload(report, s3, where.bucket)
        out.write(f"stored s3://{where.bucket}/{keys['report.html'].rsplit('/', 1)[0]}/\n")
        link = presigned_link(s3, where.bucket, keys["report.html"], 3600)
        if args.announce:
            if not where.topic_arn:
                raise ReportUsageError("--announce needs the report topic (--stack)")
            sns = aws.client("sns", config, region_name=args.region)
            out.write(f"announced: {announce(sns, where.topic_arn, report, link)}\n")
    out.write("\n" + report.summary(link))
    return 0
