"""The semantic half of endpointing: does a transcript sound finished?"""

from __future__ import annotations

import pytest

from voicewire.pipeline.turn_end import unfinished_reason


@pytest.mark.parametrize(
    "text",
    [
        "What is the CPU usage right now?",
        "Hello, how are you today?",
        "Thank you.",
        "Show me a bar chart of sales: January 120, February 150, and March 90.",
        "What is the sentiment of this review? The food was great.",
        "What is 5 plus 3?",
        "Put these in a scatter chart: 1 and 2, 3 and 5, and 6 and 4.",  # closed by "and"
        "I am 30 and 40.",
        "I am 30.",
        "",
    ],
)
def test_finished_requests_end_at_once(text: str) -> None:
    assert unfinished_reason(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Make a pie chart of my budget,", "punctuation"),
        ("Show me a bar chart of sales:", "punctuation"),
        ("I would like a bar chart of.", "last word"),
        ("Apples 5, oranges 3 and", "last word"),
        ("Show me a bar chart of sales.", "missing data"),  # the figures are still to come
        ("Is this customer email positive or negative?", "missing data"),
        ("What is the sentiment of this review?", "missing data"),
        ("Analyze the sentiment of this customary mail.", "missing data"),  # its text follows
        ("Plot a line chart of visitors. Monday 30.", "list"),
        ("Rent 1200, food 400, travel 250.", "list"),  # no "and ..." closed it
        ("Put these in a scatter chart. 1 and 2, 3 and 5.", "list"),  # pairs: "and" closes none
        ("I need a bar chart comparing", "last word"),
        ("What do you make of this review?", "missing data"),  # the review follows
        ("Thoughts on this tweet?", "missing data"),
        ("What do you make on this menu?", "missing data"),  # an opinion of what follows
        ("Put these in a scatter chart, 1 and 2.", "list"),
    ],
)
def test_unfinished_requests_wait(text: str, why: str) -> None:
    assert unfinished_reason(text) == why


def test_a_follow_up_is_finished_when_the_history_holds_its_data() -> None:
    from benchmarks.routing_accuracy import PRIOR

    assert unfinished_reason("Make that a pie chart.") == "missing data"
    assert unfinished_reason("Make that a pie chart.", PRIOR) is None
