"""What the mock says: deterministic words from a hash of the conversation, tool calls, prefill.

Pure functions and data, no I/O. The shapes turn an `Answer` into each API's JSON.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

import orjson

# 32 words, so one sha256 byte picks one word without bias
VOCABULARY = tuple(
    "the quick brown fox jumps over a lazy dog while streams of tokens flow through the gateway "
    "relay lines bytes and events arrive quietly fast under load every single time with care".split()
)


def message_text(content: Any) -> str:
    """A message's text: a string, or the `text` of its content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def answer_words(prompt: str, count: int) -> list[str]:
    """`count` words chosen by sha256 of the prompt: same prompt, same answer."""
    words: list[str] = []
    digest = hashlib.sha256(prompt.encode()).digest()
    for i in range(count):
        if i and i % len(digest) == 0:
            digest = hashlib.sha256(digest).digest()
        words.append(VOCABULARY[digest[i % len(digest)] % len(VOCABULARY)])
    return words


def word_pieces(words: list[str]) -> list[str]:
    """One piece per content chunk: the word, with a leading space except the first."""
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def split_prefill(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The conversation without a trailing assistant message, and that message's text.

    A trailing assistant message with text is a prefill: the model continues it. The
    answer is derived from the conversation before it, so a continuation of a cut stream
    (the gateway's mid-stream resume) gives the same full answer as the first attempt.
    """
    last = messages[-1]
    if last.get("role") == "assistant" and (text := message_text(last.get("content"))):
        return messages[:-1], text
    return messages, None


def continue_after(pieces: list[str], prefill: str | None) -> list[str]:
    """The pieces left after `prefill`, when it is a prefix of the full text; else all of them.

    So prefill + what is sent == the full answer, each character exactly once; a prefill
    that ends inside a word leaves the rest of that word as the first piece.
    """
    if not prefill or not "".join(pieces).startswith(prefill):
        return pieces
    rest, skip = [], len(prefill)
    for piece in pieces:
        if skip >= len(piece):
            skip -= len(piece)
            continue
        rest.append(piece[skip:])
        skip = 0
    return rest


def tool_names(tools: Any) -> list[str]:
    """Tool names from either dialect's `tools` (OpenAI `function.name`, Anthropic `name`)."""
    names: list[str] = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else tool.get("name")
            if isinstance(name, str) and name:
                names.append(name)
    return names


@dataclass(frozen=True)
class ToolCall:
    key: str  # hex; each shape prefixes it (`call_`, `toolu_`, `fc_`)
    name: str
    arguments: str  # a compact JSON object

    def fragments(self) -> list[str]:
        """The arguments in small pieces (3, 5, 4, 3, 5, 4... characters), as providers stream them."""
        pieces: list[str] = []
        pos = 0
        for size in itertools.cycle((3, 5, 4)):
            if pos >= len(self.arguments):
                return pieces
            pieces.append(self.arguments[pos : pos + size])
            pos += size
        raise AssertionError("unreachable")  # pragma: no cover


def tool_call(prompt: str, name: str, index: int) -> ToolCall:
    seed = f"{prompt}\0{name}\0{index}"
    digest = hashlib.sha256(seed.encode()).hexdigest()
    arguments = {"query": " ".join(answer_words(seed, 4)), "limit": 1 + int(digest[:2], 16) % 9}
    return ToolCall(digest[:24], name, orjson.dumps(arguments).decode())


@dataclass(frozen=True)
class Answer:
    id: str
    model: str
    created: int
    pieces: list[str]  # the text content chunks to send (after a prefill, only the rest)
    tool_calls: list[ToolCall]  # after the text, if any
    prompt_tokens: int
    capped: bool  # max_tokens cut the text short
    include_usage: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        """One token per content chunk sent: text pieces and tool-argument fragments."""
        return len(self.pieces) + sum(len(call.fragments()) for call in self.tool_calls)


@dataclass(frozen=True)
class Ask:
    """What one request asks of the answer, from its body and fault spec."""

    words: int
    cap: int | None  # max_tokens
    tool_calls: int = 0  # answer with this many tool calls (when the request has tools)
    text_then_tool: bool = False  # text first, then the tool calls
    include_usage: bool = False


@dataclass(frozen=True)
class Conversation:
    """A request's input, whichever API it came in: messages (non-empty), system, tools."""

    messages: list[dict[str, Any]]
    system: Any = None
    tools: Any = None


def prompt_tokens(talk: Conversation) -> int:
    """Input tokens: the words of every message (a prefill included) and of the system prompt."""
    texts = [message_text(m.get("content")) for m in talk.messages] + [message_text(talk.system)]
    return max(1, sum(len(t.split()) for t in texts))


def build_answer(talk: Conversation, model: str, answer_id: str, ask: Ask) -> Answer:
    messages = talk.messages
    conversation, prefill = split_prefill(messages)
    user = [m for m in conversation if m.get("role") == "user"]
    prompt = message_text(user[-1].get("content")) if user else ""
    names = tool_names(talk.tools)
    calls = ask.tool_calls if names else 0
    words = ask.words if not calls or ask.text_then_tool else 0
    count = min(words, ask.cap) if ask.cap is not None else words
    return Answer(
        id=answer_id,
        model=model,
        created=int(time.time()),
        pieces=continue_after(word_pieces(answer_words(prompt, count)), prefill),
        tool_calls=[tool_call(prompt, names[i % len(names)], i) for i in range(calls)],
        prompt_tokens=prompt_tokens(talk),
        capped=count < words,
        include_usage=ask.include_usage,
    )
