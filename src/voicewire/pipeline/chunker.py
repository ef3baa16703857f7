"""Sentence chunker: turns a stream of LLM tokens into sentences for TTS as early as is safe.

Time to first audio depends on how soon the first sentence is complete, so a sentence is
released the moment its end is unambiguous, not one token later: ``!`` and ``?`` end it at once;
``.`` ends it at once after a real word, but waits for the next character after a digit ("3.5"),
a single letter ("e.g.") or a known abbreviation ("Dr."). Very long clauses are split at a comma
so one run-on sentence cannot hold back the audio.

The first chunk of a reply matters most: TTS time grows with its length, and the user is
waiting. So until something has been released, a clause boundary (", " "; " ": ") after at least
``first_min_chars`` characters releases the clause on its own.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "approx",
        "no",
        "fig",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
    ]
)
_CLOSERS = "\"')]}\u201d\u2019"
_CLAUSE = re.compile(r"[,;:]\s")
_WORD_BEFORE = re.compile(r"(\w+)[.]+[" + re.escape(_CLOSERS) + r"]*$")


class SentenceChunker:
    def __init__(self, max_chars: int = 240, first_min_chars: int = 20) -> None:
        self.max_chars = max_chars
        self.first_min_chars = first_min_chars  # 0: no early first clause
        self._buf = ""
        self._released = False
        # where the next push resumes scanning: what lies before it is decided (a "." at the
        # very end is not: the next character decides it), so a sentence is scanned once,
        # not once per token
        self._scan = 0

    def push(self, text: str) -> list[str]:
        """Add a token; return the sentences it completed (often none)."""
        self._buf += text
        out: list[str] = []
        start = 0
        buf = self._buf
        i = self._scan
        undecided = len(buf)  # a terminator run that reaches the end, not taken as an end
        while i < len(buf):
            ch = buf[i]
            if ch in ".!?":
                end = i + 1
                while end < len(buf) and buf[end] in ".!?" + _CLOSERS:
                    end += 1
                if end < len(buf):
                    if buf[end].isspace() and self._ends_sentence(buf[start:end], followed=True):
                        out.append(buf[start:end].strip())
                        start = end
                elif self._ends_sentence(buf[start:end], followed=False):
                    out.append(buf[start:end].strip())
                    start = end
                else:
                    undecided = i
                i = end
                continue
            if ch == "\n" and buf[start:i].strip():
                out.append(buf[start:i].strip())
                start = i + 1
            i += 1
        rest = buf[start:]
        scan = undecided - start
        if not out and not self._released and self.first_min_chars:
            clause = _CLAUSE.search(rest, self.first_min_chars)
            if clause is not None:
                out.append(rest[: clause.start() + 1].strip())
                rest, scan = rest[clause.end() :], scan - clause.end()
        if len(rest) > self.max_chars:
            cut = rest.rfind(", ", 0, self.max_chars)  # a clause boundary if there is one
            if cut <= 0:
                cut = rest.rfind(" ", 0, self.max_chars)
            if cut > 0:
                out.append(rest[: cut + 1].strip())
                rest, scan = rest[cut + 1 :], scan - cut - 1
        self._buf, self._scan = rest, max(0, scan)
        out = [s for s in out if s]
        self._released = self._released or bool(out)
        return out

    def flush(self) -> list[str]:
        """End of the reply: whatever is left is the last sentence."""
        rest, self._buf, self._scan = self._buf.strip(), "", 0
        return [rest] if rest else []

    @staticmethod
    def _ends_sentence(candidate: str, followed: bool) -> bool:
        stripped = candidate.rstrip(_CLOSERS)
        if not stripped or stripped[-1] in "!?":
            return bool(stripped.strip(".!? "))
        match = _WORD_BEFORE.search(stripped)
        if match is None:
            return followed and bool(stripped.strip(". "))
        word = match.group(1)
        if word.lower() in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
        if word.isdigit():
            # "in 2024." ends a sentence; "3." may be "3.5"; "1." alone numbers a list item
            return followed and stripped.strip() != f"{word}."
        return True


# Markup a model may write that a TTS would read out ("asterisk asterisk") or stumble on.
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_LINK = re.compile(r"\[([^\]]+)\]\([^)\s]*\)")
_MARKUP = re.compile(
    r"\*\*|__|`+|\\[()\[\]]"  # emphasis, code, LaTeX delimiters
    r"|^\s*#{1,6}\s+"  # a heading's marks
    r"|^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+(?=\S)",  # a list item's marker
    re.M,
)


def speakable(sentence: str) -> str:
    """The words of a sentence a TTS should say: markdown and LaTeX markers removed (the
    system prompt asks cloud models for plain speech; small local ones write lists anyway).
    The text shown to the user keeps them."""
    text = _LINK.sub(r"\1", _BOXED.sub(r"\1", sentence))
    return " ".join(_MARKUP.sub("", text).split())
