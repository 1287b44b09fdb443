"""`support-pipeline`: the ops command line.

Works against AWS or the local stack through the standard ``AWS_ENDPOINT_URL``; finds queues
from ``--stack NAME`` (or ``$SUPPORT_PIPELINE_STACK``) outputs, else from ``EVENTS_QUEUE_URL``
/ ``EVENTS_DLQ_URL``, and tables from the outputs or ``ACTIONS_TABLE`` / ``CONVERSATIONS_TABLE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from support_pipeline import aws
from support_pipeline_ops import settings
from support_pipeline_ops.dlq import DeadLetter, DeadLetterQueue

MOVE_TASK_CONFIG = aws.CLI_CONFIG.merge(
    Config(retries={"total_max_attempts": 1, "mode": "standard"})
)


class UsageError(Exception):
    """Something the operator can fix; printed without a traceback."""


@dataclass(frozen=True)
class Queues:
    queue_url: str
    dlq_url: str
    queue_arn: str
    dlq_arn: str
    bucket: str


def resolve_queues(stack: str | None, sqs: Any, cloudformation: Any | None) -> Queues:
    """Queue URLs and ARNs from the stack's Outputs, or from the environment."""
    if stack:
        if cloudformation is None:
            raise UsageError("--stack needs a CloudFormation client")
        try:
            found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        except Exception as exc:
            raise UsageError(f"cannot read stack {stack!r}: {exc}") from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
        try:
            return Queues(
                outputs["EventsQueueUrl"],
                outputs["EventsDLQUrl"],
                outputs["EventsQueueArn"],
                outputs["EventsDLQArn"],
                outputs.get("PayloadBucketName", ""),
            )
        except KeyError as exc:
            raise UsageError(f"stack {stack!r} has no output {exc}") from None
    queue_url = os.environ.get("EVENTS_QUEUE_URL", "")
    dlq_url = os.environ.get("EVENTS_DLQ_URL", "")
    if not queue_url or not dlq_url:
        raise UsageError(
            "say which pipeline: --stack NAME, or EVENTS_QUEUE_URL and EVENTS_DLQ_URL "
            "(`support-pipeline local` prints them)"
        )

    def arn(url: str) -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        return str(attrs["QueueArn"])

    return Queues(
        queue_url, dlq_url, arn(queue_url), arn(dlq_url), os.environ.get("PAYLOAD_BUCKET", "")
    )


def _table(rows: list[dict[str, str]], out: TextIO) -> None:
    columns = [
        "id",
        "event",
        "account",
        "conversation",
        "error_type",
        "failed_at",
        "receive_count",
        "error_reason",
    ]
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in rows)) for c in columns[:-1]}
    out.write("  ".join(c.upper().ljust(widths[c]) for c in columns[:-1]) + "  REASON\n")
    for row in rows:
        out.write(
            "  ".join(row.get(c, "").ljust(widths[c]) for c in columns[:-1])
            + "  "
            + row["error_reason"]
            + "\n"
        )


def run_dlq(args: argparse.Namespace, dlq: DeadLetterQueue, queues: Queues, out: TextIO) -> int:
    if args.dlq_command == "list":
        peek = dlq.peek()
        rows = [letter.summary() for letter in peek.letters]
        note = f"{peek.note()}; nothing was consumed" if not peek.complete else ""
        if args.json:
            listing = {
                "messages": rows,
                "listed": len(rows),
                "approximate_total": peek.approximate_total,
                "complete": peek.complete,
                "note": note,
            }
            json.dump(listing, out, indent=2)
            out.write("\n")
            return 0
        if rows:
            _table(rows, out)
        elif peek.complete:
            out.write("The DLQ is empty.\n")
        if note:
            out.write(note + ".\n")
        return 0
    if args.dlq_command == "show":
        shown, peek = dlq.show(args.id)
        if shown is None:
            if peek.complete:
                raise UsageError(f"no message {args.id} in the DLQ")
            raise UsageError(
                f"no message {args.id} among the {len(peek.letters)} listed of about "
                f"{peek.approximate_total}: {peek.stopped_early}; try again"
            )
        json.dump(shown, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    if args.dlq_command == "redrive":
        return _redrive(args, dlq, queues, out)
    if args.dlq_command == "purge":
        if not args.yes:
            raise UsageError(
                "purge deletes every message in the DLQ for good; add --yes to confirm"
            )
        dlq.purge()
        out.write("DLQ purged.\n")
        return 0
    raise UsageError(f"unknown dlq command {args.dlq_command}")


def _redrive(args: argparse.Namespace, dlq: DeadLetterQueue, queues: Queues, out: TextIO) -> int:
    if not (args.all or args.id or args.event):
        raise UsageError("choose what to redrive: --all, --id ID ..., or --event NAME")
    warned = False
    if args.all and not args.dry_run:
        waiting = _depth(dlq)
        # The task moves what it moves out of sight: warn about what will fail again first.
        seen = dlq.peek()
        where = "in the DLQ" if seen.complete else f"of the {len(seen.letters)} seen in the DLQ"
        warned = _warn_permanent(seen.letters, where)
        handle = dlq.start_move_task(queues.dlq_arn, queues.queue_arn)
        if handle is not None:
            out.write(f"Started SQS message move task {handle}; messages return to EventsQueue.\n")
            count_redriven(waiting, getattr(args, "region", None))  # about what the task moves
            return 0
        out.write("This endpoint has no StartMessageMoveTask; moving messages one by one.\n")
    ids = set(args.id or [])

    def select(letter: DeadLetter) -> bool:
        if args.all:
            return True
        return letter.message_id in ids or (bool(args.event) and letter.event == args.event)

    result = dlq.redrive(select, dry_run=args.dry_run)
    moved = result.moved
    if moved and not args.dry_run:
        count_redriven(len(moved), getattr(args, "region", None))
    verb = "Would redrive" if args.dry_run else "Redrove"
    out.write(f"{verb} {len(moved)} message(s).\n")
    for letter in moved:
        error_type = letter.attributes.get("error_type", "unknown")
        out.write(f"  {letter.message_id}  {letter.event}  {error_type}\n")
    if not warned:  # the one-by-one fallback after the move task's peek warned already
        _warn_permanent(moved)
    code = 0
    if not result.peek.complete:
        out.write(f"Looked at only part of the DLQ: {result.peek.note()}; run it again.\n")
        code = 1
    missing = ids - {letter.message_id for letter in moved}
    if missing:
        out.write(f"Not found in the DLQ: {', '.join(sorted(missing))}\n")
        code = 1
    return code


def _warn_permanent(letters: list[DeadLetter], which: str = "of these") -> bool:
    """On stderr: how many of ``letters`` failed permanently, and so will fail again; whether
    any did."""
    permanent = [letter for letter in letters if letter.permanent]
    if permanent:
        print(
            f"support-pipeline: warning: {len(permanent)} {which} failed permanently "
            f"({', '.join(sorted({str(p.attributes.get('error_type')) for p in permanent}))}): "
            "they will fail again unless the payload, the policy or Chatwoot changed",
            file=sys.stderr,
        )
    return bool(permanent)


def _depth(dlq: DeadLetterQueue) -> int:
    """The DLQ's depth before a move task, for the redriven count; 0 if it cannot be read
    (counting never stands in the way of a redrive)."""
    try:
        return dlq.depth()
    except Exception:
        return 0


def count_redriven(count: int, region: str | None) -> None:
    """Count what was redriven in CloudWatch (EventRedriven, service=ops) for the weekly
    report. A refusal is reported and does not undo or fail the redrive."""
    if count <= 0:
        return
    from support_pipeline.report.health import put_redriven

    try:
        put_redriven(aws.client("cloudwatch", aws.CLI_CONFIG, region_name=region), count)
    except (BotoCoreError, ClientError) as error:
        print(
            f"support-pipeline: redriven count not recorded in CloudWatch: {error}", file=sys.stderr
        )


def port(value: str) -> int:
    """A TCP port for argparse: 0 (any free one) to 65535."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port (0 to 65535)")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="support-pipeline", description=__doc__)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--stack",
        default=settings.default_stack(),
        help="CloudFormation stack whose Outputs name the pipeline (default: "
        "$SUPPORT_PIPELINE_STACK)",
    )
    where.add_argument(
        "--region", help="AWS region (default: $AWS_REGION, else the usual AWS configuration)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    dlq = commands.add_parser("dlq", help="inspect and redrive the dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser(
        "list", parents=[where], help="messages in the DLQ, left in place"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = dlq_commands.add_parser("show", parents=[where], help="one message in full")
    show.add_argument("id", help="SQS message id from `dlq list`")
    redrive = dlq_commands.add_parser(
        "redrive", parents=[where], help="move messages back to EventsQueue"
    )
    group = redrive.add_mutually_exclusive_group()
    group.add_argument(
        "--all", action="store_true", help="everything (StartMessageMoveTask where supported)"
    )
    group.add_argument("--id", action="append", help="a message id; repeatable")
    group.add_argument("--event", help="every message of this event")
    redrive.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    purge = dlq_commands.add_parser(
        "purge", parents=[where], help="delete every message in the DLQ"
    )
    purge.add_argument("--yes", action="store_true", help="confirm")

    actions = commands.add_parser("actions", help="what the pipeline did (or would do) in Chatwoot")
    actions_commands = actions.add_subparsers(dest="actions_command", required=True)
    actions_list = actions_commands.add_parser("list", parents=[where], help="the action ledger")
    actions_list.add_argument("--conversation", help="one conversation (needs --account)")
    actions_list.add_argument("--account", help="Chatwoot account id")
    actions_list.add_argument("--json", action="store_true", help="machine-readable output")

    from support_pipeline_ops import conversations_cli, signals_cli

    conversations_cli.add_commands(commands, where)
    signals_cli.add_commands(commands, where)

    from support_pipeline_ops import reconcile_cli

    reconcile_cli.add_commands(commands, where)

    policy = commands.add_parser("policy", help="the support policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    validate = policy_commands.add_parser("validate", help="check a policy file before using it")
    validate.add_argument("file", nargs="?", help="YAML policy (default: the shipped one)")
    validate.add_argument(
        "--chatwoot-url",
        default=os.environ.get("CHATWOOT_BASE_URL", ""),
        help="also check the team ids the policy names in this Chatwoot (token: "
        "$CHATWOOT_API_TOKEN; default: $CHATWOOT_BASE_URL)",
    )
    validate.add_argument(
        "--account",
        action="append",
        default=[],
        help="an account id to check (repeat; default: every account of the token's user)",
    )

    from support_pipeline_ops import report_cli

    report_cli.add_parser(commands, where)

    from support_pipeline_ops import pause_cli

    pause_cli.add_commands(commands, where)

    local = commands.add_parser("local", help="run the whole pipeline on this machine (moto)")
    local.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (0.0.0.0: every interface, for a Chatwoot in a container)",
    )
    local.add_argument("--port", type=port, default=3000, help="webhook HTTP port (0: any free)")
    local.add_argument(
        "--moto-port", type=port, default=5005, help="moto server port (0: any free)"
    )
    local.add_argument(
        "--backoff-scale",
        type=float,
        default=1.0,
        help="retry delays times this, for practice: 0.1 retries ten times sooner (default: 1)",
    )
    local.add_argument(
        "--metrics-file",
        default=None,
        help="where the functions' metric blobs (EMF) go, out of the log "
        "(default: a file under the system's temp directory, printed at start)",
    )
    local.add_argument(
        "--secret",
        default=os.environ.get("CHATWOOT_WEBHOOK_SECRET"),
        help="webhook secret(s) to accept (default: $CHATWOOT_WEBHOOK_SECRET, else generated)",
    )
    local.add_argument(
        "--template", default=None, help="path to template.yaml (default: found upward)"
    )
    local.add_argument("--stack-name", default="support-pipeline-local")
    local.add_argument(
        "--chatwoot-url",
        default=os.environ.get("CHATWOOT_BASE_URL", ""),
        help="act on a real Chatwoot (default: $CHATWOOT_BASE_URL, else dry run)",
    )
    local.add_argument(
        "--chatwoot-token",
        default=os.environ.get("CHATWOOT_API_TOKEN", ""),
        help="its API access token (default: $CHATWOOT_API_TOKEN)",
    )
    local.add_argument(
        "--policy",
        default=None,
        help="a support policy YAML to use instead of config/support-policy.yaml",
    )
    local.add_argument(
        "--sweep-every",
        type=float,
        default=None,
        help="seconds between SLA sweeps (default: the template's rate)",
    )
    local.add_argument(
        "--pollers",
        type=int,
        default=None,
        help="processor batches at once, one process each (default: the template's "
        "ProcessorMaximumConcurrency)",
    )

    from support_pipeline_ops import load

    load.add_command(commands)
    return parser


def run_actions(args: argparse.Namespace, table: str, out: TextIO) -> int:
    from support_pipeline.actions import ActionLedger
    from support_pipeline_ops.conversations_cli import action_summary

    if args.conversation and not args.account:
        raise UsageError("--conversation needs --account (conversation ids are per account)")
    from support_pipeline.processing.errors import PermanentError

    dynamodb = aws.resource("dynamodb", aws.CLI_CONFIG, region_name=args.region)
    try:
        items = ActionLedger(dynamodb, table).list(args.account, args.conversation)
    except PermanentError as error:  # an id that is no Chatwoot id
        raise UsageError(getattr(error, "reason", None) or str(error)) from None
    if args.json:
        json.dump(items, out, indent=2, default=str)
        out.write("\n")
        return 0
    if not items:
        out.write("No actions recorded.\n")
        return 0
    for item in items:
        out.write(
            f"{item.get('created_at', ''):<25} {item.get('status', ''):<8} "
            f"{item.get('account_id')}/{item.get('conversation_id'):<6} "
            f"{item.get('kind', ''):<14} {item.get('reason') or '-':<16} {action_summary(item)}\n"
        )
    return 0


def run_policy_validate(args: argparse.Namespace, out: TextIO) -> int:
    from pathlib import Path

    from support_pipeline.policy import PolicyError, load_default_policy, parse_policy_text

    try:
        if args.file:
            policy = parse_policy_text(Path(args.file).read_text(encoding="utf-8"), args.file)
        else:
            policy = load_default_policy()
    except (PolicyError, OSError) as error:
        raise UsageError(str(error)) from None
    from support_pipeline.drafts.registry import in_force

    out.write(
        f"{policy.source}: valid. Time zone {policy.timezone}; "
        f"urgent first response {policy.sla.targets['urgent'].first_response} s.\n"
        # As deployed: the functions never may use the layer's sample articles.
        f"Drafts when deployed: {in_force(policy.drafts, samples_allowed=False).summary()}.\n"
    )
    if args.chatwoot_url:
        return check_policy_teams(policy, args.chatwoot_url, args.account, out)
    return 0


def check_policy_teams(policy: Any, url: str, accounts: list[str], out: TextIO) -> int:
    """Every team id the policy names exists in each account (exit 1 if one does not): a
    wrong id is never sent (the escalation says so in its note), but the team is then never
    assigned."""
    from support_pipeline.chatwoot.client import ChatwootClient
    from support_pipeline.processing.errors import PipelineError

    token = os.environ.get("CHATWOOT_API_TOKEN", "")
    if not token:
        raise UsageError("--chatwoot-url needs the API token in $CHATWOOT_API_TOKEN")
    team_ids = {"escalation.team_id": policy.escalation.team_id}
    named = {where: team for where, team in team_ids.items() if team is not None}
    if not named:
        out.write("Teams: the policy names no team.\n")
        return 0
    client = ChatwootClient(url, lambda: token)
    try:
        if not accounts:
            profile = client.profile()
            accounts = [str(a.get("id")) for a in profile.get("accounts") or [] if a.get("id")]
        missing = 0
        for account in accounts:
            teams = {str(t.get("id")): t.get("name") for t in client.list_teams(account)}
            for where, team in named.items():
                if str(team) in teams:
                    out.write(
                        f"Teams: account {account}: {where} {team} is {teams[str(team)]!r}.\n"
                    )
                else:
                    missing += 1
                    out.write(
                        f"Teams: account {account}: {where} {team} does not exist "
                        f"(teams: {', '.join(sorted(teams, key=int)) or 'none'}).\n"
                    )
    except PipelineError as error:
        raise UsageError(f"Chatwoot at {url}: {error.reason}") from None
    return 1 if missing else 0


def stack_table(
    stack: str | None, cloudformation: Any | None, output_key: str, variable: str
) -> str:
    """A table's name from the stack's Outputs (``--stack``), else from the environment."""
    if stack and cloudformation is not None:
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        for output in found.get("Outputs", []):
            if output["OutputKey"] == output_key:
                return str(output["OutputValue"])
        raise UsageError(f"stack {stack!r} has no output {output_key}")
    table = os.environ.get(variable, "")
    if not table:
        raise UsageError(
            f"say which pipeline: --stack NAME, or {variable} (`support-pipeline local` prints it)"
        )
    return table


def actions_table(stack: str | None, cloudformation: Any | None) -> str:
    return stack_table(stack, cloudformation, "ActionsTableName", "ACTIONS_TABLE")


def conversations_table(stack: str | None, cloudformation: Any | None) -> str:
    return stack_table(stack, cloudformation, "ConversationsTableName", "CONVERSATIONS_TABLE")


def run_conversations(args: argparse.Namespace, out: TextIO) -> int:
    from support_pipeline.processing.errors import PermanentError
    from support_pipeline_ops import conversations_cli

    cloudformation = (
        aws.client("cloudformation", aws.CLI_CONFIG, region_name=args.region)
        if args.stack
        else None
    )
    tables = conversations_cli.Tables(
        aws.resource("dynamodb", aws.CLI_CONFIG, region_name=args.region),
        conversations_table(args.stack, cloudformation),
        actions_table(args.stack, cloudformation),
    )
    try:
        return conversations_cli.run(args, tables, out)
    except (PermanentError, conversations_cli.NotFound) as error:  # a malformed id, none found
        raise UsageError(getattr(error, "reason", None) or str(error)) from None


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    lacking = settings.missing(args)
    if lacking:
        print(f"support-pipeline: {lacking}", file=sys.stderr)
        return 2
    try:
        if args.command == "local":
            from support_pipeline_ops.local.stack import run_local

            return run_local(args)
        if args.command == "policy":
            return run_policy_validate(args, out)
        if args.command == "report":
            from support_pipeline_ops.report_cli import ReportUsageError, run_report

            try:
                return run_report(args, out)
            except ReportUsageError as error:
                raise UsageError(str(error)) from None
        if args.command == "load":
            from support_pipeline_ops import load

            try:
                return load.main(
                    args, out, args.secret or os.environ.get("CHATWOOT_WEBHOOK_SECRET")
                )
            except load.LoadError as error:
                raise UsageError(str(error)) from None
        if args.command in ("pause", "resume", "status"):
            from support_pipeline_ops.pause_cli import PauseUsageError
            from support_pipeline_ops.pause_cli import run as run_pause

            try:
                return run_pause(args, out)
            except PauseUsageError as error:
                raise UsageError(str(error)) from None
        if args.command == "actions":
            cloudformation = (
                aws.client("cloudformation", aws.CLI_CONFIG, region_name=args.region)
                if args.stack
                else None
            )
            return run_actions(args, actions_table(args.stack, cloudformation), out)
        if args.command == "conversations":
            return run_conversations(args, out)
        if args.command in ("signals", "drafts"):
            from support_pipeline_ops import signals_cli

            cloudformation = (
                aws.client("cloudformation", aws.CLI_CONFIG, region_name=args.region)
                if args.stack
                else None
            )
            table = conversations_table(args.stack, cloudformation)
            return signals_cli.run(args, table, out)
        if args.command == "reconcile":
            from support_pipeline_ops import reconcile_cli

            cloudformation = (
                aws.client("cloudformation", aws.CLI_CONFIG, region_name=args.region)
                if args.stack
                else None
            )
            table = conversations_table(args.stack, cloudformation)
            queue = stack_table(args.stack, cloudformation, "EventsQueueUrl", "EVENTS_QUEUE_URL")
            return reconcile_cli.run(args, table, queue, out)
        sqs = aws.client("sqs", aws.CLI_CONFIG, region_name=args.region)
        cloudformation = (
            aws.client("cloudformation", aws.CLI_CONFIG, region_name=args.region)
            if args.stack
            else None
        )
        queues = resolve_queues(args.stack, sqs, cloudformation)
        s3 = aws.client("s3", aws.CLI_CONFIG, region_name=args.region)
        # One attempt: an endpoint without the operation (the local stack's moto server answers
        # HTTP 500) is then told apart at once; on AWS a failure is reported, nothing moved.
        move_task_sqs = aws.client("sqs", MOVE_TASK_CONFIG, region_name=args.region)
        dlq = DeadLetterQueue(
            sqs, queues.dlq_url, queues.queue_url, s3=s3, move_task_sqs=move_task_sqs
        )
        return run_dlq(args, dlq, queues, out)
    except UsageError as error:
        print(f"support-pipeline: {error}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as error:
        print(f"support-pipeline: AWS said: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
