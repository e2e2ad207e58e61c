import io
import json
import logging

from orchestrator.logs import (
    JsonFormatter,
    RedactingFilter,
    correlation,
    correlation_id,
    redact_phone,
    register_secrets,
)


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(enabled=True))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logs.capture")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_phone_numbers_are_masked_but_dates_and_times_are_not() -> None:
    text = "from +15555550123 via whatsapp:+447700900123 on 2026-11-25 12:00, ts 1764072000.5, (555) 555-0199"
    out = redact_phone(text)
    assert "+15555550123" not in out and out.count("23") >= 2
    assert "+447700900123" not in out
    assert "2026-11-25 12:00" in out and "1764072000.5" in out
    assert "555-0199" not in out


def test_log_lines_are_json_with_correlation_id_and_no_secret_or_phone() -> None:
    register_secrets(["tok_live_abcdefgh"])
    logger, stream = _capture()
    with correlation("turn-42"):
        logger.info("sent to %s with token %s", "+15555550123", "tok_live_abcdefgh", extra={"contact": "+15555550188"})
    line = json.loads(stream.getvalue())
    assert line["cid"] == "turn-42"
    assert "+15555550123" not in line["msg"] and "tok_live_abcdefgh" not in line["msg"]
    assert "[secret]" in line["msg"]
    assert line["contact"].endswith("88") and line["contact"] != "+15555550188"


def test_a_whatsapp_message_id_is_logged_as_a_digest_that_carries_no_number() -> None:
    # a wamid is base64 of a payload with the contact's number in it (PROTOCOLS §4)
    import base64
    payload = b"\x15\x02\x00\x11\x1815555550123\x15\x02\x00\x12\x18 3EB0A1B2C3D4E5F6"
    wamid = "wamid." + base64.b64encode(payload).decode()
    logger, stream = _capture()
    with correlation(wamid):
        logger.info("turn done")
    cid = json.loads(stream.getvalue())["cid"]
    assert cid.startswith("wa-") and wamid not in cid and "15555550123" not in cid
    with correlation(wamid):  # a retry of the same delivery shares the id
        assert correlation_id() == cid
