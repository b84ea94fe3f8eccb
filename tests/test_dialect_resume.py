"""A mid-stream resume asks the dialects, not the API: each dialect builds its own prefill
request (`Dialect.with_prefill`) and gives the spot that reads and continues a client's stream
of it (`Dialect.client_spot`); nothing in relay/ names an API."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.dialects import ANTHROPIC, OPENAI, Dialect, Usage
from gateway.dialects.completions import COMPLETIONS
from gateway.dialects.responses import RESPONSES


@pytest.mark.parametrize(("dialect", "body", "asked"), [
    (OPENAI, {"messages": [{"role": "user", "content": "hi"}]},
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "so far"}]}),
    (ANTHROPIC, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "so far"}],
      "max_tokens": 5}),
    (RESPONSES, {"input": "hi"},
     {"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "so far"}]}),
    (COMPLETIONS, {"prompt": "hi "}, {"prompt": "hi so far"}),
    (COMPLETIONS, {"prompt": ["hi "]}, {"prompt": ["hi so far"]}),
    (COMPLETIONS, {"prompt": [1, 2]}, {"prompt": [1, 2]}),  # token ids: left as they are
])
def test_each_dialect_builds_its_own_prefill(dialect: Dialect, body: dict[str, object],
                                             asked: dict[str, object]) -> None:
    assert orjson.loads(dialect.with_prefill(orjson.dumps(body), "so far")) == asked
    assert orjson.loads(dialect.with_prefill(orjson.dumps(body), "")) == body  # nothing streamed


def test_a_completions_spot_continues_in_the_clients_ids() -> None:
    spot = COMPLETIONS.client_spot(include_usage=True)
    first = {"id": "cmpl-1", "created": 7, "model": "m",
             "choices": [{"index": 0, "text": "Hel", "finish_reason": None}]}
    assert spot.seen("message", first) == "Hel"
    more = orjson.loads(spot.more_text("lo")[6:])
    assert (more["id"], more["created"], more["choices"][0]["text"]) == ("cmpl-1", 7, "lo")
    events = [orjson.loads(line[6:]) for line in spot.ending(None, COMPLETIONS, Usage(3, 4), "Hello")
              .split(b"\n\n") if line.startswith(b"data: {")]
    assert events[0]["choices"][0]["finish_reason"] == "stop"
    assert events[1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_a_responses_spot_numbers_after_the_clients_last_event() -> None:
    spot = RESPONSES.client_spot(include_usage=False)
    spot.seen("response.created", {"type": "response.created", "sequence_number": 0,
                                   "response": {"id": "resp_1", "status": "in_progress"}})
    spot.seen("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1,
                                             "output_index": 0, "item": {"id": "msg_1", "type": "message"}})
    text = spot.more_text("more")
    assert orjson.loads(text.split(b"data: ", 1)[1])["sequence_number"] == 2
    end = spot.ending(None, RESPONSES, Usage(1, 2), "more")
    numbers = [orjson.loads(line[6:])["sequence_number"] for line in end.split(b"\n")
               if line.startswith(b"data: ")]
    assert numbers == [3, 4, 5, 6] and spot.last_number == 6
    completed = orjson.loads(end.rsplit(b"data: ", 1)[1])
    assert completed["response"]["id"] == "resp_1" and completed["response"]["usage"]["total_tokens"] == 3


def test_relay_names_no_api() -> None:
    relay = Path(__file__).resolve().parent.parent / "gateway" / "relay"
    for path in relay.glob("*.py"):
        source = path.read_text()
        assert '"responses"' not in source and '"completions"' not in source, path
    assert not (relay / "resume_apis.py").exists()
