"""Opt-out words as people type them, on every text channel: SMS, WhatsApp over Twilio, the
WhatsApp Cloud API, and `orchestrator chat` / `test` (one Conversation). Each generated variant
of STOP (fullwidth, zero-width characters inside and around, emoji and punctuation after, any
case, extra spaces) opts the contact out; a sentence with "stop" inside it never does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fakes.signing import (
    APP_SECRET,
    VERIFY_TOKEN,
    sms_form,
    twilio_request,
    wa_envelope,
    wa_text,
    wa_value,
    whatsapp_request,
)
from flowkit import FLOWS_DIR
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.twilio_sms import TwilioSmsChannel
from channels.whatsapp import WhatsAppChannel
from orchestrator.cli.chat import Conversation
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.keywords import OPT_OUT_WORDS, keyword_kind
from orchestrator.flow.loader import load_flow
from orchestrator.plugins.connectors import default_connectors

TOKEN = "keyword-auth-token-0123456789"
SMS = TwilioSmsChannel(auth_token=TOKEN, account_sid="AC" + "0" * 32)
WA = WhatsAppChannel(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, token="t" * 12)
COMPILED = compile_flow(load_flow(FLOWS_DIR / "dental_booking.yaml"))
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u00ad"]
AFTER = ["🛑", "✋", "👍🏽", "❤️", "🇺🇸", "🙏", "!", ".", "!!!", "?", "…", "。", "\uff01", " :)", " 😡😡", "‼️", "*"]
EXAMPLES = settings(max_examples=60, deadline=None)


def kind_sms(text: str) -> str | None:
    [item] = SMS.parse(twilio_request(TOKEN, "/webhooks/twilio/sms", sms_form(text)))
    return None if item.kind == "event" else item.kind


def kind_wa_twilio(text: str) -> str | None:
    form = sms_form(text, sender="whatsapp:+15555550123", to="whatsapp:+15555550100")
    [item] = SMS.parse(twilio_request(TOKEN, "/webhooks/twilio/sms", form))
    return None if item.kind == "event" else item.kind


def kind_whatsapp(text: str) -> str | None:
    request = whatsapp_request(wa_envelope(wa_value([wa_text(text)])))
    WA.verify(request)
    [item] = WA.parse(request)
    return None if item.kind == "event" else item.kind


def kind_chat(text: str) -> str | None:
    async def talk() -> str | None:
        conversation = Conversation(COMPILED, default_connectors(), channel="sms", contact="+15555550123",
                                    now=1_800_000_000.0)
        await conversation.start()
        return (await conversation.type(text)).keyword

    return asyncio.run(talk())


CHANNELS: dict[str, Callable[[str], str | None]] = {
    "sms": kind_sms, "whatsapp_over_twilio": kind_wa_twilio, "whatsapp": kind_whatsapp, "chat": kind_chat,
}


@st.composite
def stop_variants(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(sorted(OPT_OUT_WORDS)))
    letters = [c.lower() if draw(st.booleans()) else c for c in word]
    if draw(st.booleans()):  # fullwidth letters (and the ideographic space)
        letters = ["\u3000" if c == " " else chr(ord(c) + 0xFEE0) for c in letters]
    out = []
    for c in letters:
        out.append(c)
        if draw(st.integers(0, 3)) == 0:
            out.append(draw(st.sampled_from(ZERO_WIDTH)))
    text = "".join(out)
    lead = draw(st.lists(st.sampled_from([*ZERO_WIDTH, " ", "\t"]), max_size=2))
    tail = draw(st.lists(st.sampled_from([*ZERO_WIDTH, " ", *AFTER]), max_size=3))
    return "".join(lead) + text + "".join(tail)


words = st.text(alphabet=st.characters(categories=("Ll", "Lu")), min_size=1, max_size=8)


@st.composite
def sentences_with_stop(draw: st.DrawFn) -> str:
    stop = draw(st.sampled_from(["stop", "STOP", "Stop", "\uff33\uff34\uff2f\uff30", "st\u200bop"]))
    before = draw(st.lists(words, min_size=1, max_size=3))
    after = draw(st.lists(words, min_size=1, max_size=3))
    return " ".join([*before, stop, *after]) + draw(st.sampled_from(["", ".", " 🛑", "!"]))


@EXAMPLES
@given(stop_variants(), st.sampled_from(sorted(CHANNELS)))
def test_every_stop_variant_opts_out_on_every_channel(text: str, channel: str) -> None:
    assert CHANNELS[channel](text) == "opt_out", (channel, text)


@EXAMPLES
@given(sentences_with_stop(), st.sampled_from(sorted(CHANNELS)))
def test_a_sentence_with_stop_inside_is_not_an_opt_out(text: str, channel: str) -> None:
    assert CHANNELS[channel](text) is None, (channel, text)


def test_named_variants_and_sentences() -> None:
    fullwidth_stop, fullwidth_stop_all = "\uff33\uff34\uff2f\uff30", "\uff53\uff54\uff4f\uff50\u3000\uff41\uff4c\uff4c"
    for text in [fullwidth_stop, "S\u200bTOP", "\u200bstop\u200b", "STOP 🛑", "stop!!", "Stop.", fullwidth_stop_all,
                 "\ufeffUnsubscribe", "STOP❤️", "🛑 STOP", "cancel 🇺🇸"]:
        for channel, kind in CHANNELS.items():
            assert kind(text) == "opt_out", (channel, text)
    for text in ["don't stop the booking", "please stop calling me at work", "stop by at 3", "STOP 2", "non-stop",
                 "stopped", "END OF DAY"]:
        for channel, kind in CHANNELS.items():
            assert kind(text) is None, (channel, text)
    assert (keyword_kind("\uff33\uff34\uff21\uff32\uff34 🙂"), keyword_kind("help?")) == ("opt_in", "help")
