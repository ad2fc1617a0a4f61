"""The `openai` teacher backend: any OpenAI-compatible chat endpoint (vllm serve, SGLang, TGI,
Ollama, OpenAI, ...), asynchronous, with bounded concurrency and retries.

* At most `concurrency` requests in flight, spread over `base_urls` (least busy first; an
  endpoint that asked to wait with Retry-After is avoided until then): several URLs serve
  data-parallel replicas.
* 429, 408/409, 5xx, timeouts, dropped connections and malformed bodies are retried up to
  `max_retries` times, waiting what Retry-After / retry-after-ms says, else an exponential
  backoff with jitter; the slot is free while waiting. Other 4xx fail at once, and so does a 500
  that reports a validation error (llama.cpp's server answers an unsupported response_format so):
  the same request would fail the same way. A failure after the retries is returned as
  `Reply(error=...)` — recorded, never raised, never cached.
* Structured output is negotiated with the server: when it refuses the response format sent
  (json_schema), the request is sent again at once with the next weaker one (json_object with
  the schema, bare json_object, none; the schema is then also in the prompt), and every later
  request uses it. `usage.structured_output` records what each reply was asked with.
* The API key is read from the env var named by `api_key_env` and kept in memory only: it is not
  part of the cache key, the config dump, logs or errors.
* transport `aiohttp` (default) posts JSON directly; `openai` goes through `AsyncOpenAI` (on its
  aiohttp transport where available). Chosen on measurement: see BENCHMARKS.md, "Teacher client".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict

from lionloop import (
    AsyncRunner,
    BackendEnv,
    ChatBackend,
    ConfigError,
    PluginOptions,
    Registry,
    Reply,
    TeacherConfig,
    TeacherRequest,
    fold_thinking,
    hookimpl,
)

from .http_retry import MAX_RETRY_AFTER_S, Fail, Retry, describe, status_error
from .openai_server import base_urls, check_server, server_status

log = logging.getLogger(__name__)


class OpenAIOptions(PluginOptions):
    """`teacher.options` of the openai backend: extra fields of every chat-completion request body
    (top_p, seed, ...), sent as given and part of the cache key. Any key is accepted: which
    fields a server takes is the server's to say (it answers 400 to one it does not know)."""

    model_config = ConfigDict(extra="allow")


@dataclass
class _Endpoint:
    url: str
    inflight: int = 0
    not_before: float = 0.0  # monotonic time before which the server asked us not to call
    client: Any = None  # AsyncOpenAI for the `openai` transport


class OpenAIBackend(ChatBackend):
    """Chat completions against one or more OpenAI-compatible base URLs."""

    name = "openai"

    def __init__(self, cfg: TeacherConfig, env: BackendEnv | None = None) -> None:
        super().__init__(cfg, env)
        self.endpoints = [_Endpoint(u) for u in base_urls(cfg)]
        self._api_key = self._read_key(cfg)
        self.transport = cfg.transport
        self.stats: Counter[str] = Counter()  # tries, retries by reason, peak in-flight
        self._runner: AsyncRunner | None = None
        self._session: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._inflight = 0
        self._rr = 0

    def _read_key(self, cfg: TeacherConfig) -> str:
        if not cfg.api_key_env:
            return "EMPTY"  # local servers (vllm serve, ...) accept any key
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise ConfigError(f"{self.path}.api_key_env: environment variable {cfg.api_key_env} is not set")
        return key

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(model={self.model!r}, endpoints={[e.url for e in self.endpoints]})"

    @classmethod
    def check_server(cls, cfg: TeacherConfig, path: str, judge_room: int = 0) -> list[str]:
        """The start-up check of the servers at `base_urls` (plugins/openai_server.py)."""
        return check_server(cfg, path, judge_room)

    @classmethod
    def server_status(cls, cfg: TeacherConfig) -> list[str]:
        """What each server at `base_urls` lists, for `lionloop run --check` (plugins/openai_server.py)."""
        return server_status(cfg)

    # -- sync face -------------------------------------------------------------------------------

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        runner = self._ensure_runner()
        yield from runner.each([lambda r=r: self._ask(r, attempt) for r in requests])

    async def _ask(self, request: TeacherRequest, attempt: int) -> Reply:
        """One request, stepping structured output down while the server refuses its format."""
        mode = self.structured_output
        while True:
            prompt = self.prompt_for(request, attempt, mode)
            reply = await self._call(self.body(prompt))
            refused = reply.usage.pop("refused_format", False)
            if prompt.get("response_format") is None or not refused:
                if prompt.get("response_format") is not None:
                    reply.usage["structured_output"] = mode
                return reply
            weaker = self.downgrade(mode, reply.error or "")
            if weaker is None or weaker == mode:
                return reply
            self.stats[f"structured_output: {mode} refused"] += 1
            mode = weaker

    def body(self, prompt: dict[str, Any]) -> dict[str, Any]:
        """The JSON body of one chat completion request."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt["messages"],
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
            **self.cfg.options,
        }
        if prompt.get("response_format") is not None:
            body["response_format"] = prompt["response_format"]
        return body

    def _ensure_runner(self) -> AsyncRunner:
        if self._runner is None:
            self._runner = AsyncRunner(f"lionloop-openai-{self.model}")
            self._runner.call(self._setup())
            weakref.finalize(self, _shutdown, self._runner, self._session, [e.client for e in self.endpoints])
        return self._runner

    def close(self) -> None:
        if self._runner is not None:
            _shutdown(self._runner, self._session, [e.client for e in self.endpoints])
            self._runner = None
            self._session = None

    # -- async core ------------------------------------------------------------------------------

    async def _setup(self) -> None:
        self._sem = asyncio.Semaphore(self.cfg.concurrency)
        headers = {"Authorization": f"Bearer {self._api_key}"}
        if self.transport == "aiohttp":
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.cfg.concurrency, ttl_dns_cache=300),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),  # per try
            )
            return
        try:
            import openai
        except ImportError as err:
            raise ConfigError(f"{self.path}.transport: openai is not installed ({err})") from None
        for ep in self.endpoints:
            try:
                http_client = openai.DefaultAioHttpClient()
            except Exception:  # noqa: BLE001 - the aiohttp extra is optional
                http_client = None
            ep.client = openai.AsyncOpenAI(
                base_url=ep.url, api_key=self._api_key, max_retries=0, timeout=self.cfg.timeout_s,
                http_client=http_client,
            )

    def _pick(self, avoid: _Endpoint | None) -> _Endpoint:
        """Least busy endpoint not cooling down after a Retry-After (else the one free soonest);
        after a failure, another endpoint where there is one; ties rotate."""
        now = time.monotonic()
        self._rr += 1
        n = len(self.endpoints)
        return min(
            self.endpoints,
            key=lambda e: (e.not_before if e.not_before > now else 0.0,
                           e.inflight + (n if e is avoid and n > 1 else 0),
                           (self.endpoints.index(e) - self._rr) % n),
        )

    async def _slot(self, avoid: _Endpoint | None) -> _Endpoint:
        """A concurrency slot and the endpoint to use it on, chosen once the slot is free."""
        assert self._sem is not None
        while True:
            await self._sem.acquire()
            ep = self._pick(avoid)
            wait = ep.not_before - time.monotonic()
            if wait <= 0:
                ep.inflight += 1
                self._inflight += 1
                self.stats["peak_inflight"] = max(self.stats["peak_inflight"], self._inflight)
                return ep
            self._sem.release()  # every endpoint asked us to wait: do so without a slot
            await asyncio.sleep(wait)

    def _release(self, ep: _Endpoint) -> None:
        ep.inflight -= 1
        self._inflight -= 1
        assert self._sem is not None
        self._sem.release()

    async def _call(self, body: dict[str, Any]) -> Reply:
        tries = self.cfg.max_retries + 1
        last: str = ""
        avoid: _Endpoint | None = None
        for k in range(tries):
            ep = await self._slot(avoid)
            self.stats["tries"] += 1
            t0 = time.monotonic()
            try:
                data = await self._post(ep, body)
                reply = self._reply(data)
                reply.usage["tries"] = k + 1
                reply.usage["seconds"] = round(time.monotonic() - t0, 3)  # of the try that answered
                return reply
            except Fail as err:
                return Reply(error=f"{err} (not retried)", usage={"refused_format": err.refused_format})
            except Retry as err:
                last, server_wait = err.reason, err.wait
            except asyncio.TimeoutError:
                last, server_wait = f"timeout: no reply within {self.cfg.timeout_s:g}s", None
            except Exception as err:  # noqa: BLE001 - connection resets, bad bodies, ...
                last, server_wait = describe(err), None
            finally:
                self._release(ep)
            self.stats[f"retry: {last.split(':', 1)[0]}"] += 1
            avoid = ep
            if k + 1 == tries:
                break
            if server_wait is not None:
                # The server named its wait: no call to it before then (other endpoints may serve).
                ep.not_before = max(ep.not_before, time.monotonic() + min(server_wait, MAX_RETRY_AFTER_S))
                log.debug("openai %s: %s; retry %d/%d after %.2fs", ep.url, last, k + 1, tries - 1, server_wait)
            else:
                delay = min(self.cfg.max_backoff_s, self.cfg.retry_backoff_s * 2**k) * random.uniform(0.5, 1.0)
                log.debug("openai %s: %s; retry %d/%d in %.2fs", ep.url, last, k + 1, tries - 1, delay)
                await asyncio.sleep(delay)
        return Reply(error=f"{last} (after {tries} {'try' if tries == 1 else 'tries'})")

    async def _post(self, ep: _Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        if self.transport == "openai":
            return await self._post_openai(ep, body)
        import aiohttp

        try:
            async with self._session.post(f"{ep.url}/chat/completions", json=body) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise status_error(resp.status, resp.headers, text)
        except asyncio.TimeoutError:  # aiohttp's own timeout errors are TimeoutErrors too
            raise Retry(f"timeout: no reply within {self.cfg.timeout_s:g}s") from None
        except (aiohttp.ClientError, ConnectionError) as err:
            raise Retry(describe(err)) from None
        try:
            return json.loads(text)
        except ValueError:
            raise Retry("malformed: response body is not JSON") from None

    async def _post_openai(self, ep: _Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.wait_for(self._post_openai_once(ep, body), self.cfg.timeout_s)

    async def _post_openai_once(self, ep: _Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        import openai

        known = ("model", "messages", "temperature", "max_tokens", "response_format")
        kwargs = {k: body[k] for k in known if k in body}
        extra = {k: v for k, v in body.items() if k not in known}
        try:
            resp = await ep.client.chat.completions.create(**kwargs, extra_body=extra or None)
        except openai.APIStatusError as err:
            raise status_error(err.status_code, err.response.headers, err.response.text) from None
        except openai.APITimeoutError:
            raise Retry(f"timeout: no reply within {self.cfg.timeout_s:g}s") from None
        except openai.APIConnectionError as err:
            raise Retry(f"connection: {err}") from None
        except (openai.APIResponseValidationError, ValueError) as err:
            raise Retry(f"malformed: {err}") from None
        return resp.model_dump()

    def _reply(self, data: dict[str, Any]) -> Reply:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            raise Retry("malformed: response has no choices")
        choice = choices[0] or {}
        message = choice.get("message") or {}
        text = message.get("content")
        if not isinstance(text, str):
            text = ""  # null content (e.g. a refusal): an empty reply, for the parser to reject
        usage = dict(data.get("usage") or {})
        usage = {k: usage[k] for k in ("prompt_tokens", "completion_tokens") if isinstance(usage.get(k), int)}
        usage["finish_reason"] = choice.get("finish_reason")
        # A server that parses a reasoning model's thinking out of the content (vllm serve
        # --reasoning-parser, DeepSeek's API: `reasoning_content`, newer vLLM `reasoning`) sends it
        # apart: put back in front, the reply reads as an unparsed one does (the answer parsed, the
        # thinking kept, learnt with student.thinking: learn; all thinking and no answer a failure).
        thinking = next((message[k] for k in ("reasoning_content", "reasoning") if isinstance(message.get(k), str)), None)
        return Reply(text=fold_thinking(thinking, text), usage=usage)


def _shutdown(runner: AsyncRunner, session: Any, clients: list[Any]) -> None:
    async def close() -> None:
        if session is not None:
            await session.close()
        for c in clients:
            if c is not None:
                await c.close()

    try:
        if not runner.loop.is_closed():
            runner.call(close(), timeout=10)
    except Exception:  # noqa: BLE001 - best effort at shutdown
        pass
    runner.close()


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_backend("openai", OpenAIBackend, options=OpenAIOptions)
