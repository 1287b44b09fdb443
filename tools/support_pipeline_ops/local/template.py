"""Read template.yaml and create its queues, tables, bucket and parameters on any endpoint.

The local stack and the tests provision from the template itself, with the same attributes,
so the local pipeline and AWS cannot drift apart. Only the intrinsic functions the template
uses for these resources are evaluated (Ref, GetAtt, Sub, Join, If/Equals/Not).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

_SHORT_TAGS = {
    "!Ref": "Ref",
    "!Condition": "Condition",
}
_FN_TAGS = [
    "GetAtt",
    "Sub",
    "Join",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Select",
    "Split",
    "FindInMap",
    "Base64",
    "GetAZs",
    "ImportValue",
]


# API Gateway resources the local stack does not create (the HTTP front stands in for them).
API_TYPES = ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api", "AWS::Serverless::Api")


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form tags."""


def _construct(tag: str) -> Any:
    def build(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {tag: value}

    return build


for _short, _long in _SHORT_TAGS.items():
    _CfnLoader.add_constructor(_short, _construct(_long))
for _name in _FN_TAGS:
    _CfnLoader.add_constructor(f"!{_name}", _construct(f"Fn::{_name}"))


def load(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template."""
    with open(path, encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506  # nosec B506 - a SafeLoader subclass
    return loaded


def find_template(start: Path | None = None) -> Path:
    """template.yaml in the current directory or the nearest parent (the repository root)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "template.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("template.yaml not found here or in any parent directory")


@dataclass
class Stack:
    """Physical names and attributes of the provisioned resources."""

    name: str
    template: dict[str, Any]
    parameters: dict[str, str]
    region: str = REGION
    account: str = ACCOUNT_ID
    physical: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    # ---- intrinsic functions -------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self._get_att(name, attr)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, parts = arg
                return str(sep).join(str(self.resolve(p)) for p in self.resolve(parts))
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
        return {k: self.resolve(v) for k, v in value.items()}

    def condition(self, name: str) -> bool:
        return bool(self._evaluate(self.template.get("Conditions", {})[name]))

    def _evaluate(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            ((key, arg),) = expr.items()
            if key == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if key == "Fn::Not":
                return not self._evaluate(arg[0])
            if key == "Fn::And":
                return all(self._evaluate(a) for a in arg)
            if key == "Fn::Or":
                return any(self._evaluate(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
        return self.resolve(expr)

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::StackName": self.name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }.get(name)

    def _ref(self, name: str) -> Any:
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            value = self.parameters[name]
            spec = self.template.get("Parameters", {}).get(name, {})
            if spec.get("Type") == "CommaDelimitedList":  # Ref gives a list, as in CloudFormation
                return [part.strip() for part in value.split(",")]
            return value
        if name in self.physical:
            return self.physical[name]
        if self.template.get("Resources", {}).get(name, {}).get("Type") in API_TYPES:
            # No API Gateway here: a stand-in id, so a URL built from it (the health probe's
            # WEBHOOK_URL) resolves to a name that clearly is not a real API.
            return f"{name.lower()}-local"
        raise KeyError(f"cannot resolve Ref {name} locally")

    def _get_att(self, name: str, attr: str) -> str:
        if (name, attr) in self.attributes:
            return self.attributes[(name, attr)]
        raise KeyError(f"cannot resolve GetAtt {name}.{attr} locally")

    def _sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token in variables:
                return str(self.resolve(variables[token]))
            if "." in token and not token.startswith("AWS::"):
                name, attr = token.split(".", 1)
                return self._get_att(name, attr)
            return str(self._ref(token))

        return re.sub(r"\$\{([^}!]+)\}", replace, template)

    # ---- reading the template ------------------------------------------------------------
    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {
            name: spec
            for name, spec in self.template.get("Resources", {}).items()
            if spec.get("Type") == kind
        }

    def function_environment(self, function: str) -> dict[str, str]:
        """The environment variables the template gives ``function`` (Globals merged)."""
        globals_env = (
            self.template.get("Globals", {})
            .get("Function", {})
            .get("Environment", {})
            .get("Variables", {})
        )
        own = (
            self.template["Resources"][function]["Properties"]
            .get("Environment", {})
            .get("Variables", {})
        )
        return {k: str(self.resolve(v)) for k, v in {**globals_env, **own}.items()}

    def sqs_event_source(self, function: str) -> dict[str, Any]:
        """The SQS event source properties of ``function``, resolved."""
        for event in self.template["Resources"][function]["Properties"].get("Events", {}).values():
            if event.get("Type") == "SQS":
                resolved: dict[str, Any] = self.resolve(event["Properties"])
                return resolved
        raise KeyError(f"{function} has no SQS event source")

    def outputs(self) -> dict[str, str]:
        found = {}
        for name, spec in self.template.get("Outputs", {}).items():
            try:
                found[name] = str(self.resolve(spec["Value"]))
            except KeyError:
                continue
        return found


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
    }


def provision(
    template: dict[str, Any],
    clients: Mapping[str, Any],
    stack_name: str = "support-pipeline-local",
    overrides: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Stack:
    """Create the template's queues, tables and buckets, and put ``secrets`` in SSM.

    ``clients`` holds boto3 clients for ``sqs``, ``dynamodb``, ``s3`` and ``ssm``, and may hold
    ``sns`` (topics are then created; without it they only get their ARN).
    ``secrets`` maps a template parameter naming an SSM parameter to the value to store.
    """
    stack = Stack(
        name=stack_name,
        template=template,
        parameters={**parameter_defaults(template), **(overrides or {})},
        region=clients["sqs"].meta.region_name or REGION,
    )
    _create_queues(stack, clients["sqs"])
    _create_tables(stack, clients["dynamodb"])
    _create_buckets(stack, clients["s3"])
    _create_topics(stack, clients.get("sns"))
    for parameter, value in (secrets or {}).items():
        clients["ssm"].put_parameter(
            Name=stack.parameters[parameter], Value=value, Type="SecureString", Overwrite=True
        )
    return stack


def _create_queues(stack: Stack, sqs: Any) -> None:
    queues = stack.resources("AWS::SQS::Queue")
    # Dead-letter targets first: a RedrivePolicy names their ARN.
    ordered = sorted(queues, key=lambda name: "RedrivePolicy" in queues[name].get("Properties", {}))
    for name in ordered:
        props = queues[name].get("Properties", {})
        queue_name = str(stack.resolve(props.get("QueueName", f"{stack.name}-{name}")))
        attributes: dict[str, str] = {}
        for prop in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
        ):
            if prop in props:
                attributes[prop] = str(stack.resolve(props[prop]))
        for prop in ("RedrivePolicy", "RedriveAllowPolicy"):
            if prop in props:
                policy = stack.resolve(props[prop])
                if "maxReceiveCount" in policy:
                    policy["maxReceiveCount"] = int(policy["maxReceiveCount"])
                attributes[prop] = json.dumps(policy)
        if "SqsManagedSseEnabled" in props:
            attributes["SqsManagedSseEnabled"] = str(props["SqsManagedSseEnabled"]).lower()
        url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
        stack.physical[name] = url
        stack.attributes[(name, "QueueName")] = queue_name
        stack.attributes[(name, "QueueUrl")] = url
        stack.attributes[(name, "Arn")] = f"arn:aws:sqs:{stack.region}:{stack.account}:{queue_name}"


def _create_tables(stack: Stack, dynamodb: Any) -> None:
    for name, spec in stack.resources("AWS::DynamoDB::Table").items():
        props = stack.resolve(spec["Properties"])
        table_name = props.get("TableName") or f"{stack.name}-{name}"
        request: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        dynamodb.create_table(**request)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
        stack.physical[name] = table_name
        stack.attributes[(name, "Arn")] = (
            f"arn:aws:dynamodb:{stack.region}:{stack.account}:table/{table_name}"
        )


def _create_buckets(stack: Stack, s3: Any) -> None:
    for name, spec in stack.resources("AWS::S3::Bucket").items():
        props = stack.resolve(spec.get("Properties", {}))
        bucket = props.get("BucketName") or f"{stack.name}-{name}".lower()
        s3.create_bucket(Bucket=bucket)
        if "BucketEncryption" in props:
            s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        # CloudFormation and the S3 API spell this key differently.
                        {
                            "ApplyServerSideEncryptionByDefault": rule[
                                "ServerSideEncryptionByDefault"
                            ]
                        }
                        for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                    ]
                },
            )
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
            )
        stack.physical[name] = bucket
        stack.attributes[(name, "Arn")] = f"arn:aws:s3:::{bucket}"


def _create_topics(stack: Stack, sns: Any | None) -> None:
    """SNS topics by name (no encryption locally); their ARN is what ``Ref`` gives."""
    for name, spec in stack.resources("AWS::SNS::Topic").items():
        props = spec.get("Properties", {})
        topic = str(stack.resolve(props.get("TopicName", f"{stack.name}-{name}")))
        arn = f"arn:aws:sns:{stack.region}:{stack.account}:{topic}"
        if sns is not None:
            arn = sns.create_topic(Name=topic)["TopicArn"]
        stack.physical[name] = arn
        stack.attributes[(name, "TopicArn")] = arn
        stack.attributes[(name, "TopicName")] = topic
