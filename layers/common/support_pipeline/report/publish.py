"""Where a report goes: the payload bucket under ``reports/<label>/``, a folder, and SNS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support_pipeline.report.builder import Report
from support_pipeline.report.settings import REPORTS_PREFIX

CONTENT_TYPES = {
    "report.json": "application/json",
    "report.csv": "text/csv; charset=utf-8",
    "report.md": "text/markdown; charset=utf-8",
    "report.html": "text/html; charset=utf-8",
}
SUBJECT_LIMIT = 100  # SNS refuses a longer subject


def key_prefix(report: Report) -> str:
    return f"{REPORTS_PREFIX}{report.label}/"


def write_folder(report: Report, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, body in report.files().items():
        path = folder / name
        path.write_bytes(body)
        written.append(path)
    return written


def upload(report: Report, s3: Any, bucket: str) -> dict[str, str]:
    """Every file of the report to ``s3://bucket/reports/<label>/``; name -> key."""
    keys = {}
    for name, body in report.files().items():
        key = key_prefix(report) + name
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=CONTENT_TYPES[name])
        keys[name] = key
    return keys


def presigned_link(s3: Any, bucket: str, key: str, expires: int) -> str:
    link: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(expires)
    )
    return link


def announce(sns: Any, topic_arn: str, report: Report, link: str | None) -> str:
    """Publish the short summary with the link; the SNS message id."""
    subject = f"Support report {report.label}"[:SUBJECT_LIMIT]
    answer = sns.publish(TopicArn=topic_arn, Subject=subject, Message=report.summary(link))
    return str(answer.get("MessageId", ""))


def publish(
    report: Report,
    s3: Any,
    bucket: str,
    sns: Any | None,
    topic_arn: str,
    link_expiry_seconds: int,
) -> dict[str, Any]:
    """Upload, link and announce: what the weekly function does."""
    keys = upload(report, s3, bucket)
    link = presigned_link(s3, bucket, keys["report.html"], link_expiry_seconds)
    message_id = announce(sns, topic_arn, report, link) if sns is not None and topic_arn else ""
    return {
        "period": report.label,
        "bucket": bucket,
        "keys": keys,
        "link_expires_in": link_expiry_seconds,
        "message_id": message_id,
        "conversations": len(report.rows),
    }
