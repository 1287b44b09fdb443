"""Which settings an ops command needs, checked before any AWS call, so a missing one is named
in one line ("AWS_REGION or --region") instead of surfacing as boto's "You must specify a
region" or a traceback."""

from __future__ import annotations

import argparse
import os

import boto3

STACK_VARIABLE = "SUPPORT_PIPELINE_STACK"
# What names the pipeline when no stack is given, per command.
PIPELINE_VARIABLES = {
    "dlq": ("EVENTS_QUEUE_URL", "EVENTS_DLQ_URL"),
    "actions": ("ACTIONS_TABLE",),
    "conversations": ("CONVERSATIONS_TABLE", "ACTIONS_TABLE"),
    "signals": ("CONVERSATIONS_TABLE",),
    "drafts": ("CONVERSATIONS_TABLE",),
    "report": ("CONVERSATIONS_TABLE",),
    "reconcile": ("CONVERSATIONS_TABLE", "EVENTS_QUEUE_URL"),
    # The pause switch's parameter: without a stack or PAUSE_PARAM there is no telling which
    # pipeline's switch to write (the template's default name may be every stack's).
    "pause": ("PAUSE_PARAM",),
    "resume": ("PAUSE_PARAM",),
    "status": ("PAUSE_PARAM",),
}


def default_stack() -> str | None:
    """``--stack``'s default: ``$SUPPORT_PIPELINE_STACK``."""
    return os.environ.get(STACK_VARIABLE, "").strip() or None


def region() -> str | None:
    """The region the usual AWS configuration gives, with ``AWS_REGION`` (the Lambda and SDK
    name) read as well as ``AWS_DEFAULT_REGION``."""
    return (
        os.environ.get("AWS_REGION", "").strip()
        or os.environ.get("AWS_DEFAULT_REGION", "").strip()
        or boto3.session.Session().region_name
        or None
    )


def missing(args: argparse.Namespace) -> str | None:
    """One line naming every setting ``args``' command lacks; None when it has them all.

    Fills ``args.region`` from the environment, so every client of the command uses it.
    """
    needs = PIPELINE_VARIABLES.get(args.command)
    if needs is None:  # local, policy: no AWS
        return None
    absent = []
    args.region = getattr(args, "region", None) or region()
    if not args.region:
        absent.append("the AWS region (AWS_REGION or --region)")
    if not getattr(args, "stack", None) and not all(os.environ.get(name) for name in needs):
        names = " and ".join(needs)
        absent.append(
            f"the pipeline (--stack NAME or {STACK_VARIABLE}, or {names} "
            "as `support-pipeline local` prints them)"
        )
    if not absent:
        return None
    return "missing setting: " + "; ".join(absent)
