"""``analyze_sentiment``: VADER scores for a text, sentence by sentence with an overall score."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import BaseModel, Field

from voicewire.tools.registry import Tool, ToolError, ToolOutput

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class SentimentArgs(BaseModel):
    text: str = Field(description="The text to score")


@cache
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def label(compound: float) -> str:
    """VADER's own thresholds."""
    if compound >= 0.05:
        return "positive"
    if compound <= -0.05:
        return "negative"
    return "neutral"


def score(text: str) -> dict[str, Any]:
    scores = _analyzer().polarity_scores(text)
    return {
        "compound": round(scores["compound"], 4),
        "positive": round(scores["pos"], 4),
        "neutral": round(scores["neu"], 4),
        "negative": round(scores["neg"], 4),
        "label": label(scores["compound"]),
    }


async def analyze_sentiment(args: SentimentArgs) -> ToolOutput:
    text = args.text.strip()
    if not text:
        raise ToolError("no text to analyze")
    result = score(text)
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    if len(sentences) > 1:
        result["sentences"] = [{"text": s, **score(s)} for s in sentences]
    return ToolOutput(result=result)


SENTIMENT_TOOL = Tool(
    name="analyze_sentiment",
    description="Score the sentiment of a text (VADER): compound -1..1, shares, and a label.",
    args=SentimentArgs,
    run=analyze_sentiment,
    vocabulary=("sentiment", "positive or negative", "review", "email", "message", "tweet"),
)
