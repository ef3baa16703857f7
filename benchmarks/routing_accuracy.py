"""Routing accuracy of the offline agent: does a request yield the right tool calls?

Each case is a request as a person says it (often as Whisper writes it), the history it follows,
and the calls expected: tool name plus the arguments that matter. A case passes when the planned
calls match exactly in number, names and those arguments. Small talk expects no call.

    python benchmarks/routing_accuracy.py
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from voicewire.providers.base import Message
from voicewire.providers.local.routing import plan


@dataclass
class Case:
    text: str
    expect: list[tuple[str, dict[str, Any]]]  # [] = no tool (small talk)
    history: list[Message] = field(default_factory=list)
    need_data: bool = False
    says: tuple[str, ...] = ()  # words the spoken reply must contain (numbers without commas)


def chart(kind: str, labels: list[Any], values: list[Any]) -> tuple[str, dict[str, Any]]:
    return ("generate_chart", {"chart_type": kind, "labels": labels, "values": values})


def metric(name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("get_realtime_data", {"metric": name, **extra})


def sentiment(text: str) -> tuple[str, dict[str, Any]]:
    return ("analyze_sentiment", {"text": text})


def after_chart(kind: str, labels: list[Any], values: list[Any]) -> list[Message]:
    args = {"chart_type": kind, "title": "Sales", "labels": labels, "values": values}
    return [
        {"role": "user", "content": "chart sales"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "generate_chart", "arguments": json.dumps(args)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
        {"role": "assistant", "content": "Here's the chart."},
    ]


MONTHS = ["January", "February", "March"]
PRIOR = after_chart("bar", MONTHS, [120, 150, 90])

CASES: list[Case] = [
    # charts with data, in many phrasings
    Case(
        "Show me a bar chart of sales: January 120, February 150, March 90.",
        [chart("bar", MONTHS, [120, 150, 90])],
    ),
    Case(
        "Show me a bar chart of sales, January 120, February 150, March 90.",
        [chart("bar", MONTHS, [120, 150, 90])],
    ),
    Case(
        "Bar chart. January one hundred twenty, February one hundred fifty, March ninety.",
        [chart("bar", MONTHS, [120, 150, 90])],
    ),
    Case(
        "Can you make a pie chart with apples 5, oranges 3 and bananas 7?",
        [chart("pie", ["apples", "oranges", "bananas"], [5, 3, 7])],
    ),
    Case(
        "Pie chart of my budget: rent 1,200, food 400, travel 250.",
        [chart("pie", ["rent", "food", "travel"], [1200, 400, 250])],
    ),
    Case(
        "Plot the trend over time: Monday 3, Tuesday 5, Wednesday 4, Thursday 8.",
        [chart("line", ["Monday", "Tuesday", "Wednesday", "Thursday"], [3, 5, 4, 8])],
    ),
    Case(
        "Draw a line graph of visitors. Week one 200, week two 260, week three 310.",
        [chart("line", ["Week 1", "Week 2", "Week 3"], [200, 260, 310])],
    ),
    Case(
        "Please graph the scores: Alice 82, Bob 91 and Carol 77.",
        [chart("bar", ["Alice", "Bob", "Carol"], [82, 91, 77])],
    ),
    Case(
        "Plot height against weight, 150 50, 160 55, 170 65, 180 80.",
        [chart("scatter", [150, 160, 170, 180], [50, 55, 65, 80])],
    ),
    Case(
        "Make a scatter plot: 1 2, 2 4, 3 5, 4 9.", [chart("scatter", [1, 2, 3, 4], [2, 4, 5, 9])]
    ),
    Case(
        "Compare revenue: Europe 4.5, Asia 6.2, America 5.1.",
        [chart("bar", ["Europe", "Asia", "America"], [4.5, 6.2, 5.1])],
    ),  # figures to compare: a bar chart (was: no call, and "Sorry" from the rules)
    Case(
        "Chart the population: Paris 2.1, Berlin 3.6, Madrid 3.3.",
        [chart("bar", ["Paris", "Berlin", "Madrid"], [2.1, 3.6, 3.3])],
    ),
    Case(
        "Show revenue trend over time, 2021 one hundred and twenty, "
        "2022 one hundred fifty, 2023 two hundred.",
        [chart("line", [2021, 2022, 2023], [120, 150, 200])],
    ),
    Case(
        "Visualize our costs, servers 300, salaries 5000 and office 1200, as a bar chart.",
        [chart("bar", ["servers", "salaries", "office"], [300, 5000, 1200])],
    ),
    Case(
        "A histogram of bugs per team: frontend 12, backend 7, mobile 9.",
        [chart("bar", ["frontend", "backend", "mobile"], [12, 7, 9])],
    ),
    # follow-ups use the last chart's data
    Case("Make that a pie chart.", [chart("pie", MONTHS, [120, 150, 90])], PRIOR),
    Case(
        "Can you show it as a line chart instead?", [chart("line", MONTHS, [120, 150, 90])], PRIOR
    ),
    Case("Now as a pie chart please.", [chart("pie", MONTHS, [120, 150, 90])], PRIOR),
    Case("Turn this into a scatter plot.", [chart("scatter", MONTHS, [120, 150, 90])], PRIOR),
    # a chart with nothing to draw asks for data
    Case("Draw me a chart.", [], need_data=True),
    Case("Make that a pie chart.", [], need_data=True),
    # sentiment
    Case(
        "What is the sentiment of: I really love this product, it works great.",
        [sentiment("I really love this product, it works great.")],
    ),
    Case(
        "What's the sentiment of? I really love this product. It works great.",
        [sentiment("I really love this product. It works great.")],
    ),
    Case(
        "How does this sound: the service was slow and the food was cold.",
        [sentiment("the service was slow and the food was cold.")],
    ),
    Case(
        "Analyze the tone of this review: absolutely fantastic experience, would come again.",
        [sentiment("absolutely fantastic experience, would come again.")],
    ),
    Case(
        "Is this positive or negative? I guess it was fine, nothing special.",
        [sentiment("I guess it was fine, nothing special.")],
    ),
    Case(
        "Check the mood of this message: I am so tired of these delays.",
        [sentiment("I am so tired of these delays.")],
    ),
    Case(
        "Sentiment analysis on the sentence, I hate waiting in line.",
        [sentiment("I hate waiting in line.")],
    ),
    # real-time data, real and simulated
    Case("What is the current CPU usage?", [metric("cpu")]),
    Case("How much memory are you using?", [metric("memory")]),
    Case("What's the CPU and memory usage right now?", [metric("cpu"), metric("memory")]),
    Case("How full is the disk? Show me the storage usage.", [metric("disk")]),
    Case("Check the network traffic.", [metric("network")]),
    Case("How many sessions are connected?", [metric("sessions")]),
    Case("What's your latency?", [metric("latency")]),
    Case("What's the stock price of Apple?", [metric("stock", symbol="AAPL")]),
    Case("How are Tesla shares trading at the moment?", [metric("stock", symbol="TSLA")]),
    Case("What's the temperature in Berlin?", [metric("temperature", location="Berlin")]),
    Case("How's the weather in New York?", [metric("temperature", location="New York")]),
    # fetch a series, then chart it (two rounds)
    Case(
        "Plot the temperature in Berlin over the last week.",
        [metric("temperature", location="Berlin")],
    ),
    Case("Chart the stock price of Nvidia.", [metric("stock", symbol="NVDA")]),
    # small talk: no tool
    Case("Hello there!", []),
    Case("What time is it?", []),
    Case("Tell me a joke.", []),
    Case("I have a terrible memory for names.", []),
    Case("Thanks, that was helpful.", []),
    Case("Who are you?", []),
]


# Written after the rules were tuned on CASES, and run once as they stand: the honest figure
# for requests the rules have not seen.
HELD_OUT: list[Case] = [
    Case(
        "Give me a bar chart of rainfall, June 30, July 12, August 8.",
        [chart("bar", ["June", "July", "August"], [30, 12, 8])],
    ),
    Case(
        "Could you plot my weight over the past month: week 1 80, week 2 79, week 3 78?",
        [chart("line", ["Week 1", "Week 2", "Week 3"], [80, 79, 78])],
    ),
    Case(
        "Pie chart for market share, Chrome sixty five, Safari nineteen, Firefox three.",
        [chart("pie", ["Chrome", "Safari", "Firefox"], [65, 19, 3])],
    ),
    Case(
        "Show that as bars.",
        [chart("bar", MONTHS, [120, 150, 90])],
        after_chart("pie", MONTHS, [120, 150, 90]),
    ),
    Case(
        "How positive is this: best purchase I've made all year.",
        [sentiment("best purchase I've made all year.")],
    ),
    Case(
        "What tone does this email have? Please respond by Friday or we will cancel.",
        [sentiment("Please respond by Friday or we will cancel.")],
    ),
    Case("Tell me the RAM usage.", [metric("memory")]),
    Case("Is the processor busy right now? What's the load?", [metric("cpu")]),
    Case("What's Microsoft trading at?", [metric("stock", symbol="MSFT")]),
    Case(
        "Is it cold in Oslo? What's the temperature there?",
        [metric("temperature", location="Oslo")],
    ),
    Case("How many users are online?", [metric("sessions")]),
    Case("Graph the Amazon stock price.", [metric("stock", symbol="AMZN")]),
    Case("Good evening, how are you?", []),
    Case("What's the date today?", []),
    Case("My computer has lots of storage problems, any advice?", []),
]


# Written on 2026-12-02 for issue 12, before the fixes it asks for (unlabelled numbers, a week
# of temperatures, periods), and scored once as the rules stood: docs/performance.md has that
# first-run figure. Requests as a new user would phrase them, not as the rules expect.
EXPENSES = after_chart("bar", ["rent", "food", "travel"], [1200, 400, 250])
HELD_OUT_2: list[Case] = [
    Case(
        "Line chart of my weight over four weeks: 80, 79, 78.5 and 77.",
        [chart("line", ["Week 1", "Week 2", "Week 3", "Week 4"], [80, 79, 78.5, 77])],
        EXPENSES,
    ),
    Case("Plot these numbers: 3, 5, 2, 8.", [chart("line", [1, 2, 3, 4], [3, 5, 2, 8])]),
    Case(
        "Make a line chart of the scores 70, 75, 72, 80, 85.",
        [chart("line", [1, 2, 3, 4, 5], [70, 75, 72, 80, 85])],
        EXPENSES,
    ),
    Case(
        "Bar chart of daily steps: Monday 8000, Tuesday 6500, Wednesday 10000.",
        [chart("bar", ["Monday", "Tuesday", "Wednesday"], [8000, 6500, 10000])],
    ),
    Case(
        "Make a pie chart of how I spend my day: sleep 8, work 9, leisure 7.",
        [chart("pie", ["sleep", "work", "leisure"], [8, 9, 7])],
    ),
    Case(
        "Show me a chart of signups: 40 in January, 55 in February, 70 in March.",
        [chart("bar", MONTHS, [40, 55, 70])],
    ),
    Case(
        "Draw a pie chart: yes 12, no 30, maybe 8.",
        [chart("pie", ["yes", "no", "maybe"], [12, 30, 8])],
    ),
    Case(
        "Plot revenue by quarter: Q1 2.5 million, Q2 3.1 million, Q3 2.8 million.",
        [chart("bar", ["Q1", "Q2", "Q3"], [2_500_000, 3_100_000, 2_800_000])],
    ),
    Case(
        "Compare these in a bar chart: cats 14, dogs 22, fish 5.",
        [chart("bar", ["cats", "dogs", "fish"], [14, 22, 5])],
    ),
    Case(
        "Scatter plot of age versus income: 25 30, 35 45, 45 60.",
        [chart("scatter", [25, 35, 45], [30, 45, 60])],
    ),
    Case("Turn it into a line chart.", [chart("line", MONTHS, [120, 150, 90])], PRIOR),
    Case(
        "Switch to bars.",
        [chart("bar", MONTHS, [120, 150, 90])],
        after_chart("pie", MONTHS, [120, 150, 90]),
    ),
    Case("Now make it a pie chart.", [], need_data=True),
    Case(
        "Show the temperature in Madrid over the last week.",
        [metric("temperature", location="Madrid", period="week")],
    ),
    Case(
        "Graph the weather in Tokyo for the past seven days.",
        [metric("temperature", location="Tokyo", period="week")],
    ),
    Case("What's the temperature in Rome today?", [metric("temperature", location="Rome")]),
    Case(
        "What's the weather like in San Francisco?",
        [metric("temperature", location="San Francisco")],
    ),
    Case(
        "Chart the Tesla stock price over the last month.",
        [metric("stock", symbol="TSLA", period="month")],
    ),
    Case("What's the price of Google stock?", [metric("stock", symbol="GOOGL")]),
    Case("How is Netflix doing on the stock market?", [metric("stock", symbol="NFLX")]),
    Case(
        "What's the sentiment of this tweet: worst customer service ever, never again.",
        [sentiment("worst customer service ever, never again.")],
    ),
    Case(
        "Is this review positive? The battery lasts all day and the screen is gorgeous.",
        [sentiment("The battery lasts all day and the screen is gorgeous.")],
    ),
    Case(
        "Analyze the sentiment of the following: meh, it's okay I suppose.",
        [sentiment("meh, it's okay I suppose.")],
    ),
    Case(
        "What's the mood of this: can't wait for the weekend!",
        [sentiment("can't wait for the weekend!")],
    ),
    Case("How much disk space is left?", [metric("disk")]),
    Case("Show me memory and disk usage.", [metric("memory"), metric("disk")]),
    Case("What's the network throughput right now?", [metric("network")]),
    Case("How's the CPU doing?", [metric("cpu")]),
    Case("How many people are talking to you right now?", [metric("sessions")]),
    Case("What's your average response time?", [metric("latency")]),
    Case("Good afternoon!", []),
    Case("Can you tell me a fun fact?", []),
    Case("What day is it tomorrow?", []),
    Case("I'm feeling a bit tired today.", []),
    Case("Thanks, bye!", []),
]


def matches(case: Case) -> bool:
    got = plan(case.text, case.history)
    return got.need_data == case.need_data and calls_match(got.calls, case)


def calls_match(calls: list[tuple[str, dict[str, Any]]], case: Case) -> bool:
    """The calls a request got are the ones it expects: names, and the arguments that matter."""
    if len(calls) != len(case.expect):
        return False
    for (name, args), (want_name, want) in zip(calls, case.expect, strict=True):
        if name != want_name:
            return False
        for key, value in want.items():
            have = args.get(key)
            if isinstance(value, str) and isinstance(have, str):
                if value.lower() != have.lower():
                    return False
            elif have != value:
                return False
    return True


def says_match(said: str, case: Case) -> bool:
    """The reply names what the case wants said ("March", "1900" for "1,900")."""
    heard = re.sub(r"(?<=\d),(?=\d{3})", "", said).lower()
    return all(word.lower() in heard for word in case.says)


def evaluate(cases: list[Case]) -> tuple[float, list[Case]]:
    failures = [c for c in cases if not matches(c)]
    return 1 - len(failures) / len(cases), failures


def main() -> None:
    for name, cases in (
        ("tuning set", CASES),
        ("held-out set", HELD_OUT),
        ("held-out set 2 (2026-12-02)", HELD_OUT_2),
    ):
        accuracy, failures = evaluate(cases)
        print(f"{name}: {accuracy:.1%} ({len(cases) - len(failures)}/{len(cases)} requests)")
        for case in failures:
            print(f"  MISS {case.text!r}\n       got {plan(case.text, case.history)}")


if __name__ == "__main__":
    main()
