"""Tool routing for the offline agent: what a spoken request asks for, as real tool calls.

Rules live in data (``METRICS``, ``CHART_TYPES``, ``TICKERS`` and the patterns below) and the
planner reads them; there is no chain of ifs per phrasing. It copes with how people speak and
how Whisper writes it: numbers as words ("one hundred and twenty"), commas and colons anywhere,
"plot X against Y", follow-ups ("make that a pie chart") from the tool calls in the history.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, process
from word2number import w2n

from voicewire.providers.base import Message
from voicewire.providers.local.follow_ups import NUMBER, answer, edit, to_number

# ----------------------------------------------------------------------------- rule tables

CHART_WORDS = re.compile(
    r"\b(chart|graph|plot|plotted|visuali[sz]e|diagram|histogram|pie|bars?|trend)\b", re.I
)
# first matching chart type wins; "against"/"versus" mean x-y data
CHART_TYPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pie", re.compile(r"\b(pie|donut|doughnut|proportions?|shares? of|breakdown)\b", re.I)),
    ("scatter", re.compile(r"\b(scatter|against|versus|vs\.?|correlat\w*)\b", re.I)),
    ("line", re.compile(r"\b(line|trend|over time|timeline|over the (last|past)|history)\b", re.I)),
    ("bar", re.compile(r"\b(bar|bars|column|histogram|compare|comparison)\b", re.I)),
)
# figures read out with one of these ("compare Q1 2.5, Q2 3.1") want a chart, no chart word said
SHOW_DATA = re.compile(r"\b(compare|comparison|show|display|visuali[sz]e|let me see)\b", re.I)
FOLLOW_UP = re.compile(
    r"\b(that|it|this|same|previous|last one|instead|again|now as|now a)\b", re.I
)
SWITCH = re.compile(r"\b(?:switch|turn|convert|change|redraw|as)\b", re.I)  # "switch to a pie"
_FEELING = r"(?:positive|negative|happy|sad|angry|upset|annoyed|pleased|rude|friendly|mad)"
# the kinds of text a person asks the agent to read: "what do you make of this review?"
_TEXT_KIND = (
    r"(?:text|sentences?|reviews?|messages?|comments?|phrase|line|quote|words|e-?mails?|"
    r"tweets?|posts?|feedback|note|reply|replies|letter|statement)"
)
# an opinion asked of something: "what do you make of ...", "thoughts on ..."
OPINION = (
    r"(?:what (?:do|would|will) you (?:make|think) (?:of|on|about)|how do you (?:read|feel about)|"
    r"(?:your )?(?:thoughts|opinion|take) on|how would you (?:read|rate|judge))"
)
SENTIMENT = re.compile(
    r"\b(sentiment|tone|mood)\b|\bhow does (?:this|that|it)(?: \w+)? (?:sound|come across)\b"
    # of a text: "what do you make of this review?", "thoughts on this tweet"
    rf"|\b(?:{OPINION}|rate|judge|analy[sz]e|evaluate) (?:this|that|these|the following|the|my|"
    rf"our)(?: \w+)? {_TEXT_KIND}\b"
    # of whatever follows, said at once: "what do you make of this menu? the soup was cold"
    rf"|\b{OPINION} (?:this|these|the following)(?: \w+){{0,2}}(?=\s*[?:]\s*\S+(?:\s+\S+){{2}})"
    rf"|\bhow (?:does|do) (?:this|that|these|the)(?: \w+)? {_TEXT_KIND} (?:sound|feel|read|"
    r"come across)\b"
    r"|\b(?:feeling|emotion|attitude|vibe)s? (?:of|in|behind) (?:this|that|these|the)\b"
    r"|\b(?:is (?:this|that|it) )?positive or negative\b|\bhow (?:positive|negative) is\b"
    r"|\b(?:is|was|does) (?:this|that|it)(?: \w+)? (?:sound )?(?:positive|negative)\b"
    # "is this a happy message: ...", "tell me if this customer is angry: ..."
    rf"|\b(?:a|an|this|that|the) {_FEELING} (?:message|e-?mail|review|text|comment|note|reply)\b"
    rf"|\b(?:this|that|the) (?:customer|client|user|writer|sender) (?:is|was|sounds?|seems?) "
    rf"{_FEELING}\b",
    re.I,
)
# what stands between "sentiment" and the text: "of this review:", "analysis on the sentence,"
SENTIMENT_LEAD = re.compile(
    r"^(?:[\s:?,.!\"']|\b(?:of|in|for|on|about|analysis|score|to you|to me|like)\b)*"
    r"(?:(?:(?:this|the following|the|my|that|these)\s+)?"  # a determiner only with its noun
    r"(?:(?:customer|client|user|product|new|last|latest|following)'?s?\s+)?"  # "customer email"
    r"(?:text|sentences?|review|message|comment|phrase|line|quote|words|e-?mail|tweet|post|"
    r"feedback|note|reply)\b)?[\s:?,.!\"']*",
    re.I,
)
HOST_QUESTION = re.compile(
    r"\b(usage|use|used|using|load|how much|how full|current|currently|level|status|free|"
    r"utili[sz]ation|what|show|check|tell|give|how(?:'s| is| are)|doing|busy|left|full|"
    r"filling|capacity|room|running (?:out|low|hot)|consum\w*|okay|ok|fine|healthy|slow|high|"
    r"how \w+ (?:is|are)|at the moment|right now)\b",
    re.I,
)
# metric -> pattern; host metrics also need a question word (HOST_QUESTION)
METRICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "cpu",
        re.compile(r"\b(cpu|c\.? ?p\.? ?u\.?|processors?|compute load|processing load)\b", re.I),
    ),
    ("memory", re.compile(r"\b(memory|ram)\b", re.I)),
    (
        "disk",
        re.compile(r"\b(disks?|discs?|storage|drive space|hard drives?|ssd|free space)\b", re.I),
    ),
    (
        "network",
        re.compile(r"\b(network|bandwidth|traffic|throughput|internet (?:speed|usage))\b", re.I),
    ),
    (
        "sessions",
        re.compile(
            r"\b(sessions?|connections?|users?|people|clients?|callers?)\b.*"
            r"\b(connected|online|active|logged in)\b"
            r"|\bhow many (?:\w+ )?(sessions|connections|users|clients|callers)\b"
            r"|\bhow many\b[^.?!]*\b(connected|online|logged in|talking to you)\b",
            re.I,
        ),
    ),
    (
        "latency",
        re.compile(r"\b(latency|response times?|time to first audio|how fast are you)\b", re.I),
    ),
    ("stock", re.compile(r"\b(stocks?|share price|shares|ticker|trading at|stock price)\b", re.I)),
    (
        "temperature",
        re.compile(
            r"\b(temperature|temp|degrees|forecast|weather|how (?:hot|cold|warm) is it|"
            r"is it (?:hot|cold|warm|freezing|raining|sunny))\b",
            re.I,
        ),
    ),
)
HOST_METRICS = {"cpu", "memory", "disk", "network"}
TICKERS = {
    "apple": "AAPL", "microsoft": "MSFT", "google": "GOOGL", "alphabet": "GOOGL",
    "amazon": "AMZN", "tesla": "TSLA", "nvidia": "NVDA", "meta": "META", "facebook": "META",
    "netflix": "NFLX", "intel": "INTC", "ibm": "IBM", "oracle": "ORCL",
}  # fmt: skip
STOP = {
    "a", "an", "and", "the", "of", "for", "with", "in", "on", "to", "by", "per", "me", "show",
    "make", "draw", "plot", "chart", "graph", "bar", "pie", "line", "scatter", "please", "is",
    "was", "were", "at", "had", "has", "then", "also", "data", "values", "sales",
}  # fmt: skip
NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "billion",
    "point",
]
_NUMBER_RUN = re.compile(
    r"\b(?:"
    + "|".join(NUMBER_WORDS)
    + r")(?:(?:\s+|-)(?:and\s+)?(?:"
    + "|".join(NUMBER_WORDS)
    + r"))*\b",
    re.I,
)
# items split at "," (not a thousands separator: "1,200"), ";", "and", ". ", "then"
_ITEM_SPLIT = re.compile(r",(?!\d{3}(?!\d))\s*|;\s*|\s+and\s+|\.\s+|\s+then\s+", re.I)
# "2.5 million" -> 2500000, before the number words are read (word2number takes "million" alone)
_SCALED = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(thousand|million|billion)\b", re.I)
_SCALE = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
# the span a simulated series covers
_LAST = r"\b(?:last|past|this|a|one) "
PERIOD_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("month", re.compile(_LAST + r"month\b|\b(?:30|thirty) days\b|\bmonthly\b", re.I)),
    ("week", re.compile(_LAST + r"week\b|\b(?:7|seven) days\b|\bweekly\b", re.I)),
    (
        "day",
        re.compile(r"\b(?:last|past) (?:24|twenty[- ]four) hours\b|\b(?:last|past) day\b", re.I),
    ),
)
# "for the past 7 days": a span, not a data point
_SPAN = re.compile(
    r"\b(?:over|for|in|during|from)?\s*(?:the\s+)?(?:last|past|next)\s+\d+\s+"
    r"(?:hours?|days?|weeks?|months?|years?)\b",
    re.I,
)
# units that name the points of an unlabelled series: "over four weeks: 80, 79, 78"
_UNIT = re.compile(r"\b(day|week|month|quarter|year|hour|minute|round|game|lap)s?\b", re.I)
_LOCATION = re.compile(r"\b(?:in|at|for)\s+((?:[A-Z][\w'-]+)(?:\s+[A-Z][\w'-]+)*)")
_TITLE = re.compile(
    r"\b(?:chart|graph|plot|diagram)\s+(?:of|for|showing|with)\s+(?:the\s+|my\s+|our\s+)?"
    r"([a-z][a-z ]{1,40}?)(?=\s*(?:[:,.]|\bfor\b|\bby\b|\bper\b|\bin\b|\bover\b|\bfrom\b|"
    r"\bagainst\b|\d|$))",
    re.I,
)


# Trigger phrases as speech-to-text nearly writes them: "part chart", "pie chat", "sentimental
# analysis", "disc space". A phrase of the transcript this close (rapidfuzz ratio, letters
# only) to one of these is read as it. Multi-word phrases only, and a high bar, so that
# ordinary words are never rewritten ("a bar" stays, "art chart" does not become anything).
TRIGGERS = (
    "bar chart", "pie chart", "line chart", "line graph", "bar graph", "scatter plot",
    "sentiment analysis", "cpu usage", "memory usage", "disk space",
    "disk usage", "stock price", "share price", "network traffic", "customer email",
)  # fmt: skip
FUZZY_MIN = 80.0
_WORD = re.compile(r"[A-Za-z']+")


def heal(text: str) -> str:
    """Rewrite near-misses of the trigger phrases into the phrases (see ``TRIGGERS``)."""
    words = list(_WORD.finditer(text))
    out: list[str] = []
    last = 0
    i = 0
    while i < len(words) - 1:
        first, second = words[i], words[i + 1]
        pair = f"{first.group(0)} {second.group(0)}".lower()
        match = process.extractOne(pair, TRIGGERS, scorer=fuzz.ratio, score_cutoff=FUZZY_MIN)
        if match is not None and pair != match[0] and _same_start(pair, match[0]):
            out.append(text[last : first.start()] + match[0])
            last = second.end()
            i += 2
            continue
        i += 1
    return "".join(out) + text[last:]


def _same_start(heard: str, phrase: str) -> bool:
    """The second words must be alike too ("part chart", "customary mail"), so a phrase is
    never made of a word and anything after it ("customer is" is not "customer email")."""
    said, meant = heard.split()[1], phrase.split()[1]
    return said[:2] == meant[:2] or fuzz.ratio(said, meant) >= 75


# ----------------------------------------------------------------------------- extraction


def words_to_digits(text: str) -> str:
    """'one hundred and twenty' -> '120' (word2number), leaving other words alone."""
    text = _SCALED.sub(lambda m: _n_str(float(m.group(1)) * _SCALE[m.group(2).lower()]), text)

    def convert(match: re.Match[str]) -> str:
        phrase = match.group(0)
        try:
            return str(w2n.word_to_num(phrase.replace("-", " ")))
        except ValueError:
            return phrase

    return _NUMBER_RUN.sub(convert, text)


def _n_str(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def extract_series(text: str) -> tuple[list[Any], list[float | int]]:
    """Label/value pairs ("January 120, February 150") or x/y pairs ("150 50, 160 55")."""
    data = text.split(":", 1)[1] if ":" in text else text
    labels: list[Any] = []
    values: list[float | int] = []
    for item in _ITEM_SPLIT.split(data):
        numbers = re.findall(NUMBER, item)
        if len(numbers) == 2 and not re.search(r"[A-Za-z]{2,}", item):
            labels.append(to_number(numbers[0]))  # an x, y pair
            values.append(to_number(numbers[1]))
            continue
        if not 1 <= len(numbers) <= 2:
            continue
        value_at = item.rfind(numbers[-1])
        before = item[:value_at].rstrip()
        if len(numbers) == 2:  # a label with a number in it: "week 2 260", "Q1 100"
            number_label = re.search(
                r"([A-Za-z][\w'&-]*\s*" + re.escape(numbers[0]) + r")\s*$", before
            )
            if number_label is None:
                continue
            labels.append(number_label.group(1).capitalize())
            values.append(to_number(numbers[1]))
            continue
        words = re.findall(r"[A-Za-z][\w'&-]*", before)
        label: list[str] = []
        for word in reversed(words):
            if word.lower() in STOP or len(label) == 2:
                break
            label.insert(0, word)
        if not label:  # "120 in January"
            after = re.findall(r"[A-Za-z][\w'&-]*", item[item.find(numbers[0]) + len(numbers[0]) :])
            label = [w for w in after if w.lower() not in STOP][:2]
        if label:
            labels.append(" ".join(label))
            values.append(to_number(numbers[0]))
    return labels, values


def bare_series(text: str) -> tuple[list[Any], list[float | int]]:
    """Numbers with no labels ("my weight over four weeks: 80, 79, 78.5 and 77"): labelled by
    the unit the request names ("Week 1".."Week 4"), else 1..n, so new data is never lost."""
    data = text.split(":", 1)[1] if ":" in text else text
    values = [to_number(n) for n in re.findall(NUMBER, data)]
    if len(values) < 2:
        return [], []
    unit = _UNIT.search(text)
    if unit:
        name = unit.group(1).capitalize()
        return [f"{name} {i}" for i in range(1, len(values) + 1)], values
    return list(range(1, len(values) + 1)), values


def period_of(text: str) -> str | None:
    for period, pattern in PERIOD_PATTERNS:
        if pattern.search(text):
            return period
    return None


def chart_type(text: str, default: str = "bar") -> str:
    for kind, pattern in CHART_TYPES:
        if pattern.search(text):
            return kind
    return default


def chart_title(text: str) -> str:
    """The chart's subject, in sentence case: "Show a chart of the monthly sales" -> "Monthly
    sales"."""
    match = _TITLE.search(text)
    if not match:
        return ""
    title = match.group(1).strip()
    return title[:1].upper() + title[1:]


def metric_calls(text: str) -> list[dict[str, Any]]:
    calls = []
    for metric, pattern in METRICS:
        if not pattern.search(text):
            continue
        if metric in HOST_METRICS and not HOST_QUESTION.search(text):
            continue
        args: dict[str, Any] = {"metric": metric}
        if metric == "stock":
            args["symbol"] = stock_symbol(text)
        elif metric == "temperature":
            loc = _LOCATION.search(text)
            args["location"] = loc.group(1) if loc else "here"
        if metric in ("stock", "temperature") and (period := period_of(text)):
            args["period"] = period
        calls.append(args)
    if any(c["metric"] == "stock" for c in calls):  # "shares" is not a disk question
        calls = [c for c in calls if c["metric"] not in HOST_METRICS]
    return calls


def stock_symbol(text: str) -> str:
    for name, ticker in TICKERS.items():
        if re.search(rf"\b{name}\b", text, re.I):
            return ticker
    upper = re.search(r"\b([A-Z]{2,5})\b", text)
    if upper and upper.group(1) not in {"CPU", "RAM", "OK"}:
        return upper.group(1)
    named = re.search(r"\b(?:of|for)\s+([A-Z][\w-]+)", text)
    return named.group(1).upper() if named else "ACME"


def sentiment_text(text: str, match: re.Match[str], history: list[Message]) -> str:
    rest = text[match.end() :]
    quoted = re.search(r"[:?]\s*(.+)", rest)  # "what tone does this have? <the text>"
    if quoted and len(quoted.group(1).split()) >= 2:
        rest = quoted.group(1)
    rest = SENTIMENT_LEAD.sub("", rest, count=1).strip().strip("\"'")
    if len(rest.split()) >= 2:
        return rest
    before = text[: match.start()].strip(" :,")
    if ":" in before:
        return before.split(":", 1)[1].strip()
    previous = [m["content"] for m in history if m.get("role") == "user"]
    return previous[-1] if previous else ""


def last_chart_args(history: list[Message]) -> dict[str, Any] | None:
    for message in reversed(history):
        for call in reversed(message.get("tool_calls") or []):
            if call["function"]["name"] == "generate_chart":
                return json.loads(call["function"]["arguments"])
    return None


# ----------------------------------------------------------------------------- planning


@dataclass(slots=True)
class Plan:
    """What to call now, and whether a chart should follow data that a call fetches."""

    calls: list[tuple[str, dict[str, Any]]]
    chart_after: str | None = None  # chart type to draw from a fetched series
    need_data: bool = False  # a chart was asked for, with nothing to draw
    answer: str | None = None  # a question about the last chart, answered from its figures


def plan(text: str, history: list[Message]) -> Plan:
    """The tool calls a request needs (several run in parallel), from the request alone."""
    text = heal(text)
    spoken = words_to_digits(text)
    calls: list[tuple[str, dict[str, Any]]] = []
    sentiment = SENTIMENT.search(spoken)
    if sentiment:
        target = sentiment_text(text, SENTIMENT.search(text) or sentiment, history)
        if target:
            calls.append(("analyze_sentiment", {"text": target}))
        return Plan(calls)
    metrics = metric_calls(spoken)
    wants_chart = bool(CHART_WORDS.search(spoken)) or (
        not metrics
        and bool(SHOW_DATA.search(spoken))
        and len(extract_series(_SPAN.sub(" ", spoken))[1]) >= 2
    )
    previous = last_chart_args(history)
    new_chart = wants_chart and len(extract_series(_SPAN.sub(" ", spoken))[1]) >= 2
    if previous is not None and not metrics and not new_chart:
        if said := answer(spoken, previous):
            return Plan([], answer=said)
        kind = chart_type(spoken, previous["chart_type"])
        refers = bool(FOLLOW_UP.search(spoken) or SWITCH.search(spoken))
        if edited := edit(spoken, previous, kind, refers):
            return Plan([("generate_chart", edited)])
    if wants_chart:
        data = _SPAN.sub(" ", spoken)
        labels, values = extract_series(data)
        kind = chart_type(
            spoken, "scatter" if labels and not any(isinstance(x, str) for x in labels) else "bar"
        )
        bare_labels, bare_values = bare_series(data)
        if not metrics and len(values) < len(bare_values) / 2:
            # mostly numbers without labels ("the scores 70, 75, 72"): a sequence; new data wins
            labels, values = bare_labels, bare_values
            kind = chart_type(spoken, "line")
        if len(values) >= 1 and labels:
            args = {
                "chart_type": kind,
                "title": chart_title(spoken),
                "labels": labels,
                "values": values,
            }
            return Plan([("generate_chart", args)])
        series_metrics = [m for m in metrics if m["metric"] in ("stock", "temperature")]
        if series_metrics:
            return Plan(
                [("get_realtime_data", series_metrics[0])], chart_after=chart_type(spoken, "line")
            )
        if previous is not None and (FOLLOW_UP.search(spoken) or chart_type(spoken, "")):
            return Plan(
                [
                    (
                        "generate_chart",
                        {**previous, "chart_type": chart_type(spoken, previous["chart_type"])},
                    )
                ]
            )
        return Plan([], need_data=True)
    return Plan([("get_realtime_data", m) for m in metrics])
