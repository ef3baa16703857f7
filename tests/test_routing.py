"""The offline agent's routing: accuracy on the request set, and argument extraction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from benchmarks.routing_accuracy import CASES, HELD_OUT, HELD_OUT_2, evaluate

from voicewire.providers.local.routing import extract_series, words_to_digits


def test_routing_accuracy_is_at_least_90_percent() -> None:
    accuracy, failures = evaluate(CASES + HELD_OUT + HELD_OUT_2)
    assert accuracy >= 0.9, [c.text for c in failures]
    assert len(CASES + HELD_OUT + HELD_OUT_2) >= 90


@pytest.mark.parametrize(
    "spoken, digits",
    [
        ("one hundred and twenty", "120"),
        ("twenty-five apples and three pears", "25 apples and 3 pears"),
        ("two point five", "2.5"),
        ("January one hundred fifty", "January 150"),
        ("nothing to convert", "nothing to convert"),
    ],
)
def test_number_words_become_digits(spoken: str, digits: str) -> None:
    assert words_to_digits(spoken) == digits


def test_series_extraction_handles_separators_and_thousands() -> None:
    assert extract_series("rent 1,200, food 400; travel 250 and fun 75.5") == (
        ["rent", "food", "travel", "fun"],
        [1200, 400, 250, 75.5],
    )
    assert extract_series("q1 10, q2 12") == (["q1", "q2"], [10, 12])
    assert extract_series("no numbers here") == ([], [])


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("I would like a part chart of apples 5", "I would like a bar chart of apples 5"),
        ("make a pie chat", "make a pie chart"),
        ("the sentimental analysis of this", "the sentiment analysis of this"),
        ("how much disc space", "how much disk space"),
        ("show me the stock prize of apple", "show me the stock price of apple"),
        ("a bar is open", "a bar is open"),  # ordinary words stay
        ("if this customer is angry", "if this customer is angry"),  # not "customer email"
        ("read this customary mail", "read this customer email"),
        (
            "Sentiment analysis on the sentence, I hate it.",
            "Sentiment analysis on the sentence, I hate it.",
        ),
    ],
)
def test_near_misses_of_trigger_phrases_are_healed(heard: str, meant: str) -> None:
    from voicewire.providers.local.routing import heal

    assert heal(heard) == meant


@pytest.mark.parametrize(
    ("said", "call"),
    [
        (
            "Tell me if this customer is angry: the order was late.",
            ("analyze_sentiment", {"text": "the order was late."}),
        ),
        ("Is this a happy message: we won!", ("analyze_sentiment", {"text": "we won!"})),
        ("How full is the hard drive?", ("get_realtime_data", {"metric": "disk"})),
        # each of these phrasings reached no tool before the synonyms were widened
        ("Is the disk getting full?", ("get_realtime_data", {"metric": "disk"})),
        ("Are we running out of storage?", ("get_realtime_data", {"metric": "disk"})),
        (
            "How many of them are connected right now?",
            ("get_realtime_data", {"metric": "sessions"}),
        ),
        ("How many clients are logged in?", ("get_realtime_data", {"metric": "sessions"})),
        ("What's the temp in Oslo?", ("get_realtime_data", {"metric": "temperature"})),
        ("Is the internet speed okay?", ("get_realtime_data", {"metric": "network"})),
        (
            "What do you make of this review? The soup was cold.",
            ("analyze_sentiment", {"text": "The soup was cold."}),
        ),
        ("How loaded is the processor?", ("get_realtime_data", {"metric": "cpu"})),
        (
            "What do you make of this? I love it so much.",
            ("analyze_sentiment", {"text": "I love it so much."}),
        ),
        (
            "Thoughts on this comment: the app keeps crashing.",
            ("analyze_sentiment", {"text": "the app keeps crashing."}),
        ),
        (
            "How does this email come across: we regret the delay.",
            ("analyze_sentiment", {"text": "we regret the delay."}),
        ),
        (
            "Compare sales: north 4, south 6.",
            (
                "generate_chart",
                {"chart_type": "bar", "labels": ["north", "south"], "values": [4, 6]},
            ),
        ),
    ],
)
def test_requests_without_the_tool_words(said: str, call: tuple[str, dict[str, Any]]) -> None:
    from voicewire.providers.local.routing import plan

    name, args = plan(said, []).calls[0]
    assert name == call[0] and {k: args[k] for k in call[1]} == call[1]


@pytest.mark.parametrize(
    "said",
    [
        "Show me how to cook rice.",
        "I have 2 cats and 3 dogs.",
        "Is it sad that I like rain?",
        "How many people live in Tokyo?",  # "how many people" alone is not a session count
        "Read this email to me.",
        "I bought a new hard drive.",
    ],
)
def test_ordinary_sentences_call_no_tool(said: str) -> None:
    from voicewire.providers.local.routing import plan

    assert plan(said, []).calls == []


# ------------------------------------------------------------------ follow-ups on a chart

COSTS = {"chart_type": "pie", "title": "Costs", "labels": ["Rent", "Food"], "values": [900, 300]}


@pytest.mark.parametrize(
    ("said", "labels", "values", "kind"),
    [
        ("add travel 150 please", ["Rent", "Food", "Travel"], [900, 300, 150], "pie"),
        ("add 150 for travel", ["Rent", "Food", "Travel"], [900, 300, 150], "pie"),
        ("rent was 950, not 900", ["Rent", "Food"], [950, 300], "pie"),
        ("delete food and set rent to 1000", ["Rent"], [1000], "pie"),
        ("show it as bars", ["Rent", "Food"], [900, 300], "bar"),
    ],
)
def test_a_chart_is_edited_by_what_follows_it(
    said: str, labels: list[str], values: list[int], kind: str
) -> None:
    from voicewire.providers.local.follow_ups import edit
    from voicewire.providers.local.routing import chart_type

    got = edit(said, COSTS, chart_type(said, "pie"), refers="it" in said)
    assert got == {**COSTS, "chart_type": kind, "labels": labels, "values": values}


@pytest.mark.parametrize(
    ("asked", "said"),
    [
        ("What's the total?", "They add up to 1,200."),
        ("what is the average", "The average is 600."),
        ("Which one is the smallest?", "Food is the lowest, at 300."),
        ("What's the best way to save money?", None),  # not about the chart
        ("What is 2 plus 2?", None),  # numbers: not a question about these figures
        ("Add a total line.", None),  # not a question
    ],
)
def test_questions_about_a_chart_are_answered_from_its_figures(asked: str, said: str) -> None:
    from voicewire.providers.local.follow_ups import answer

    assert answer(asked, COSTS) == said


def test_follow_ups_edit_the_chart_through_the_server() -> None:
    """A conversation: a chart, a forgotten item added, a question about the figures."""
    from tests.conftest import start_server
    from voicewire.client import Client
    from voicewire.providers.base import Providers
    from voicewire.providers.fake import FakeSTT, FakeTTS
    from voicewire.providers.local.agent import RulesAgent

    srv = start_server(Providers(stt=FakeSTT(), llm=RulesAgent(), tts=FakeTTS()))

    async def talk() -> list[Any]:
        client = await Client.connect(srv.ws_url)
        try:
            return [
                await client.ask("Bar chart of visits: Monday 30, Tuesday 45"),
                await client.ask("Oh, and add Wednesday at 38."),
                await client.ask("What was the total?"),
            ]
        finally:
            await client.close()

    try:
        first, added, total = asyncio.run(talk())
    finally:
        srv.stop()
    figure = added.first("visualization_data").figure  # type: ignore[union-attr]
    assert list(figure["data"][0]["x"]) == ["Monday", "Tuesday", "Wednesday"]
    assert list(figure["data"][0]["y"]) == [30, 45, 38]
    assert first.first("visualization_data") is not None
    assert total.first("llm_complete").text == "They add up to 113."  # type: ignore[union-attr]
    assert total.first("tool_call_start") is None
