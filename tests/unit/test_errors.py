from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from support_pipeline.processing.errors import PermanentError, TransientError, classify


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem"
    )


def test_pipeline_errors_keep_their_class_and_reason():
    assert classify(PermanentError("invalid_payload", "no id")).permanent
    failure = classify(TransientError("chatwoot_unavailable", "503 from POST messages"))
    assert (failure.permanent, failure.error_type, failure.reason) == (
        False,
        "chatwoot_unavailable",
        "503 from POST messages",
    )


def test_throttling_and_5xx_and_timeouts_are_transient():
    for exc in (
        client_error("ProvisionedThroughputExceededException"),
        client_error("ThrottlingException"),
        client_error("Whatever", 503),
        client_error("Whatever", 429),
        ReadTimeoutError(endpoint_url="http://x"),
        EndpointConnectionError(endpoint_url="http://x"),
    ):
        assert not classify(exc).permanent, exc


def test_validation_and_missing_payload_are_permanent():
    assert classify(client_error("ValidationException")).permanent
    assert classify(client_error("NoSuchKey", 404)).permanent


def test_unknown_exceptions_retry_and_never_quote_their_message():
    failure = classify(KeyError("customer said something private"))
    assert not failure.permanent
    assert failure.reason == "unexpected KeyError"
