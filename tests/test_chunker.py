"""Sentence chunking: sentences leave as early as is safe, and never split wrongly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicewire.pipeline.chunker import SentenceChunker, speakable


def feed(tokens: list[str], first_min_chars: int = 0) -> tuple[list[tuple[int, str]], list[str]]:
    """Return (token index at which each sentence was released, flushed rest)."""
    chunker = SentenceChunker(first_min_chars=first_min_chars)
    released: list[tuple[int, str]] = []
    for i, token in enumerate(tokens):
        released += [(i, s) for s in chunker.push(token)]
    return released, chunker.flush()


def test_sentence_released_on_its_own_token_not_the_next() -> None:
    released, rest = feed(["Hello", " there", "!", " How", " are", " you", "?"])
    assert released == [(2, "Hello there!"), (6, "How are you?")]
    assert rest == []


def test_period_after_a_word_ends_at_once() -> None:
    released, _ = feed(["It", " is", " done", ".", " Next"])
    assert released == [(3, "It is done.")]


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["It costs 3", ".", "5", " dollars. Ok"], ["It costs 3.5 dollars."]),
        (["Ask Dr", ".", " Smith", " now. Bye"], ["Ask Dr. Smith now."]),
        (["Use e", ".", "g", ".", " this one. x"], ["Use e.g. this one."]),
        (["Born in 1990", ".", " Then"], ["Born in 1990."]),
        (['He said "stop!"', " Then"], ['He said "stop!"']),
        (["Wait...", " what?"], ["Wait...", "what?"]),
    ],
)
def test_ambiguous_periods(tokens: list[str], expected: list[str]) -> None:
    released, _ = feed(tokens)
    assert [s for _, s in released] == expected


def test_flush_returns_the_unfinished_sentence() -> None:
    released, rest = feed(["No", " punctuation", " at", " all"])
    assert released == [] and rest == ["No punctuation at all"]


def test_run_on_sentence_is_split_at_a_comma() -> None:
    chunker = SentenceChunker(max_chars=40)
    out = chunker.push("this clause goes on, and on and on and on without ever ending")
    assert out == ["this clause goes on,"]
    assert chunker.flush() == ["and on and on and on without ever ending"]


def test_newlines_separate_items() -> None:
    released, rest = feed(["First item\n", "Second item\n", "Third"])
    assert [s for _, s in released] == ["First item", "Second item"] and rest == ["Third"]


def test_a_long_first_sentence_releases_its_first_clause() -> None:
    tokens = [
        "Sure,",
        " here is",
        " the chart",
        " you asked for,",
        " showing",
        " sales",
        " by month.",
    ]
    released, _ = feed(tokens, first_min_chars=20)
    assert released == [
        (4, "Sure, here is the chart you asked for,"),
        (6, "showing sales by month."),
    ]


def test_only_the_first_chunk_is_cut_at_a_clause() -> None:
    tokens = ["Yes.", " Then, later on,", " we will see, maybe", " tomorrow."]
    released, _ = feed(tokens, first_min_chars=5)
    assert [s for _, s in released] == ["Yes.", "Then, later on, we will see, maybe tomorrow."]
    released, _ = feed(["It costs 1,000 dollars", " in total. Ok"], first_min_chars=5)
    assert [s for _, s in released] == ["It costs 1,000 dollars in total."]


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("1. **Choose the right tea**: green or black.", "Choose the right tea: green or black."),
        ("## Steps", "Steps"),
        ("- Boil the `water` first.", "Boil the water first."),
        ("See [the guide](https://example.com/tea) for more.", "See the guide for more."),
        ("There are \\( \\boxed{1440} \\) minutes in a day.", "There are 1440 minutes in a day."),
        ("It costs 2 * 3 = 6 dollars, -5 below.", "It costs 2 * 3 = 6 dollars, -5 below."),
        ("**", ""),
    ],
)
def test_markup_is_not_read_aloud(written: str, said: str) -> None:
    assert speakable(written) == said


def test_a_list_number_is_not_a_sentence() -> None:
    chunker = SentenceChunker(first_min_chars=0)
    said = chunker.push("1. Boil the water. 2. Add the tea.")
    assert said == ["1. Boil the water.", "2. Add the tea."]
    assert SentenceChunker(first_min_chars=0).push("It was 2024. Then ") == ["It was 2024."]


PIECES = ["Dr", "e", "g", "3", "5", "2024", "word", "Hi", " ", ".", "..", "!", "?", ",", ", ",
          ": ", "\n", '"', ")", "\u2019", " jan", " ok", " 3", " e", " word"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.sampled_from([0, 20]))
def test_scanning_once_releases_what_rescanning_every_token_does(
    tokens: list[str], first_min_chars: int
) -> None:
    """The chunker resumes where it stopped scanning; forcing a rescan from the start on every
    token (the old way) must release the same sentences at the same tokens."""
    once = SentenceChunker(max_chars=40, first_min_chars=first_min_chars)
    again = SentenceChunker(max_chars=40, first_min_chars=first_min_chars)
    for token in tokens:
        again._scan = 0
        assert once.push(token) == again.push(token)
    assert once.flush() == again.flush()
