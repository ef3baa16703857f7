"""The offline agent's routing: accuracy on the request set, and argument extraction."""

from __future__ import annotations

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
        (
            "Sentiment analysis on the sentence, I hate it.",
            "Sentiment analysis on the sentence, I hate it.",
        ),
    ],
)
def test_near_misses_of_trigger_phrases_are_healed(heard: str, meant: str) -> None:
    from voicewire.providers.local.routing import heal

    assert heal(heard) == meant
