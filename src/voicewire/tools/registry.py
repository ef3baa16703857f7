"""Tools: typed definitions an LLM can call, exported as OpenAI-style function schemas.

A tool is a pydantic model of its arguments plus an async function. The model gives the JSON
schema real LLMs see and validates what they send, so a wrong argument becomes a clear tool
error for the LLM to read, never an exception out of the pipeline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from voicewire.providers.base import ToolSpec

A = TypeVar("A", bound=BaseModel)


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the LLM and the user."""


@dataclass(slots=True)
class ToolOutput:
    """``result``: what the LLM and the client see. ``figure``: Plotly JSON for the viz stage."""

    result: Any
    figure: dict[str, Any] | None = None


@dataclass(slots=True)
class Tool(Generic[A]):
    name: str
    description: str
    args: type[A]
    run: Callable[[A], Awaitable[ToolOutput]]
    # how people say what this tool acts on ("bar chart", "CPU usage"): speech-to-text is
    # biased toward these words
    vocabulary: tuple[str, ...] = ()

    def spec(self) -> ToolSpec:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(self.name, self.description, schema)


class ToolRegistry:
    """The tools of a server; implements the turn's ``Tools`` protocol."""

    def __init__(self, tools: list[Tool[Any]] | None = None) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        self._specs: list[ToolSpec] = []
        for tool in tools or []:
            self.add(tool)

    def add(self, tool: Tool[Any]) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool
        # Schemas are built once here: generating them per turn cost a quarter of a turn's CPU.
        self._specs.append(tool.spec())

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[ToolSpec]:
        return self._specs

    def vocabulary(self) -> str:
        """The words the tools act on, as one phrase list for speech-to-text."""
        words = dict.fromkeys(w for tool in self._tools.values() for w in tool.vocabulary)
        return ", ".join(words) + "." if words else ""

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutput:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolError(f"unknown tool {name!r}; available: {', '.join(self._tools)}")
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            raise ToolError(f"invalid arguments for {name}: {problems}") from exc
        return await tool.run(args)
