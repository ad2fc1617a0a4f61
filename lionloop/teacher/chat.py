"""What every LLM teacher backend shares: templates, chat messages, structured output, async runs.

* `Prompts` loads a request type's Jinja2 template from the package that ships it
  (`importlib.resources`; `TeacherRequest.template_package`), optionally overridden by files in
  `teacher.prompts_dir`, and renders its `system` / `user` / `reask` blocks to chat messages.
* `ChatBackend` is the base of the `openai`, `vllm` and `hf` backends: config checks, sampling
  params and the exact thing sent (messages + response format) that the cache key hashes.
* `AsyncRunner` runs async clients on a private event loop in a daemon thread, so the
  synchronous `Backend.complete()` can yield each reply the moment it arrives (and the teacher
  caches it at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import jinja2

from lionloop.config import TeacherConfig
from lionloop.errors import ConfigError
from lionloop.teacher.requests import TeacherRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REASK = (
    "Your previous reply could not be read. Reply again, exactly in the format asked for above."
)


# -- templates -------------------------------------------------------------------------------------


def fence(text: Any, label: str, nonce: str) -> str:
    """Untrusted text as a block between markers the text itself cannot forge.

    The nonce is a hash of the whole request, and so of this text: writing the closing marker
    into the text would change the nonce.
    """
    return f"<<<{label} {nonce}>>>\n{text}\n<<<END {label} {nonce}>>>"


def request_nonce(request: TeacherRequest) -> str:
    blob = json.dumps(request.payload(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _package_loader(package: str) -> jinja2.BaseLoader:
    def load(name: str) -> str | None:
        try:
            return resources.files(package).joinpath(name).read_text(encoding="utf-8")
        except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
            return None

    return jinja2.FunctionLoader(load)


class Prompts:
    """Request templates by package, rendered to chat messages.

    A template defines `{% block system %}` (optional), `{% block user %}` and `{% block reask %}`
    (optional: appended to the user message on a re-ask after an unparseable reply). It sees the
    request's fields, `kind`, `nonce` (for `fence`), `attempt` and `schema` (the JSON schema, as
    text). Files in `override_dir` with the same name win over the packaged ones.
    """

    def __init__(self, override_dir: Path | None = None) -> None:
        self.override_dir = Path(override_dir) if override_dir else None
        if self.override_dir is not None and not self.override_dir.is_dir():
            raise ConfigError(f"teacher.prompts_dir: {self.override_dir} is not a directory")
        self._envs: dict[str, jinja2.Environment] = {}
        self._lock = threading.Lock()

    def env(self, package: str) -> jinja2.Environment:
        with self._lock:
            env = self._envs.get(package)
            if env is None:
                loaders: list[jinja2.BaseLoader] = []
                if self.override_dir is not None:
                    loaders.append(jinja2.FileSystemLoader(str(self.override_dir)))
                loaders.append(_package_loader(package))
                env = jinja2.Environment(
                    loader=jinja2.ChoiceLoader(loaders),
                    undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly
                    autoescape=False,  # chat text, not HTML
                    keep_trailing_newline=False,
                )
                env.filters["fence"] = fence
                self._envs[package] = env
            return env

    def template(self, request_type: type[TeacherRequest]) -> jinja2.Template:
        if not request_type.template:
            raise ConfigError(f"request type {request_type.kind!r} names no template")
        try:
            return self.env(request_type.template_package).get_template(request_type.template)
        except jinja2.TemplateNotFound:
            raise ConfigError(
                f"request type {request_type.kind!r}: template {request_type.template!r} not found in "
                f"package {request_type.template_package!r}"
                + (f" or {self.override_dir}" if self.override_dir else "")
            ) from None

    def messages(self, request: TeacherRequest, attempt: int = 0, system_role: bool = True,
                 schema_note: bool = False) -> list[dict[str, str]]:
        """The chat messages for a request; a re-ask (attempt > 0) appends the `reask` block.

        `schema_note` appends the reply's JSON schema to the user message: where the server
        cannot enforce it (json_object, none), the prompt is the only place the model sees it.
        """
        tmpl = self.template(type(request))
        values = {
            **request.template_values(),
            **{k: getattr(request, k) for k in type(request).model_fields},
            "kind": request.kind,
            "nonce": request_nonce(request),
            "attempt": attempt,
            "schema": json.dumps(request.json_schema()) if request.structured else "",
        }
        ctx = tmpl.new_context(values)

        def block(name: str) -> str | None:
            fn = tmpl.blocks.get(name)
            return "".join(fn(ctx)).strip() if fn else None

        system = block("system")
        user = block("user")
        if user is None:
            user = tmpl.render(values).strip()
        if schema_note and request.structured:
            user = f"{user}\n\nThe JSON object must follow this JSON schema: {json.dumps(request.json_schema())}"
        if attempt > 0:
            # Each re-ask must differ from the last, or its cache key would return the same reply.
            again = f" (retry {attempt})" if attempt > 1 else ""
            user = f"{user}\n\n{block('reask') or DEFAULT_REASK}{again}"
        if system and not system_role:  # models whose chat template has no system role
            return [{"role": "user", "content": f"{system}\n\n{user}"}]
        out = [{"role": "system", "content": system}] if system else []
        out.append({"role": "user", "content": user})
        return out


# -- the base of chat backends ---------------------------------------------------------------------


# Structured output, strongest first. A server that refuses one (HTTP 4xx, or a validation 500 as
# llama.cpp's server answers json_schema) is asked the next: json_object with the schema attached
# (llama.cpp and llama-cpp-python constrain decoding with it), bare json_object, then none. The
# schema is in the prompt too whenever the server does not enforce it.
STRUCTURED_LADDER = ("json_schema", "json_object_schema", "json_object", "none")


class ChatBackend:
    """Shared logic of the LLM backends. Subclasses implement `complete` (and may restrict
    `structured_modes`). The cache key covers `params()` and `prompt_for()`: model, sampling
    parameters, messages and the exact response format sent — never endpoints or keys."""

    name = "chat"
    structured_modes: tuple[str, ...] = ("json_schema", "json_object", "none")

    def __init__(self, cfg: TeacherConfig, env: Any = None) -> None:
        self.cfg = cfg
        # The config section it was built from (a BackendEnv's `section`), for error messages.
        self.path = getattr(env, "section", "teacher")
        if not cfg.model:
            raise ConfigError(f"{self.path}.model: the {self.name} backend needs a model name or path")
        self.model = str(cfg.model)
        if cfg.structured_output not in self.structured_modes:
            raise ConfigError(
                f"{self.path}.structured_output: the {self.name} backend supports "
                f"{', '.join(self.structured_modes)} (got {cfg.structured_output!r})"
            )
        # `json_object` as configured sends the schema along; a server that refuses the extra
        # field is stepped down to bare json_object (see `downgrade`).
        self.structured_output = "json_object_schema" if cfg.structured_output == "json_object" else cfg.structured_output
        self.prompts = Prompts(cfg.prompts_dir)
        self.cost_per_1k = (cfg.cost_per_1k_input, cfg.cost_per_1k_output)
        self._prompt_memo: dict[tuple[TeacherRequest, int, str], dict[str, Any]] = {}
        self._mode_lock = threading.Lock()

    def params(self) -> dict[str, Any]:
        """Sampling parameters that change replies (part of the cache key)."""
        return {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens, **self.extra_params()}

    def extra_params(self) -> dict[str, Any]:
        """Backend options that change replies (default: all of `options`)."""
        return dict(self.cfg.options)

    def response_format(self, request: TeacherRequest, mode: str | None = None) -> dict[str, Any] | None:
        """OpenAI-style response format for a request, or None for free text."""
        mode = mode or self.structured_output
        if not request.structured or mode == "none":
            return None
        if mode == "json_object":
            return {"type": "json_object"}
        if mode == "json_object_schema":
            return {"type": "json_object", "schema": request.json_schema()}
        return {
            "type": "json_schema",
            "json_schema": {"name": request.kind, "schema": request.json_schema(), "strict": True},
        }

    def downgrade(self, sent_mode: str, reason: str) -> str | None:
        """Step structured output down after a server refused `sent_mode`; the new mode, or None
        when there is nothing weaker to try. Later prompts (and their cache keys) use it."""
        with self._mode_lock:
            if sent_mode != self.structured_output:  # another request already stepped down
                return self.structured_output
            k = STRUCTURED_LADDER.index(sent_mode)
            if k + 1 >= len(STRUCTURED_LADDER):
                return None
            self.structured_output = STRUCTURED_LADDER[k + 1]
            log.warning("%s %s: the server refused structured output %s (%s); using %s from now on",
                        self.name, self.model, sent_mode, reason, self.structured_output)
            return self.structured_output

    def prompt_for(self, request: TeacherRequest, attempt: int, mode: str | None = None) -> dict[str, Any]:
        """Exactly what is sent for this request: the chat messages and the response format."""
        mode = mode or self.structured_output
        try:  # rendered once per (request, attempt, mode): Teacher.ask asks for it twice
            memo_key: Any = (request, attempt, mode)
            hit = self._prompt_memo.get(memo_key)
        except TypeError:  # a request type with unhashable fields (lists): no memo
            memo_key, hit = None, None
        if hit is None:
            hit = {
                # Only json_schema is enforced everywhere it is accepted; with json_object the
                # schema rides along (llama.cpp honours it, others may ignore it) and in the prompt.
                "messages": self.prompts.messages(request, attempt, self.cfg.system_role,
                                                  schema_note=mode != "json_schema"),
                "response_format": self.response_format(request, mode),
            }
            if memo_key is not None:
                if len(self._prompt_memo) > 50_000:
                    self._prompt_memo.clear()
                self._prompt_memo[memo_key] = hit
        return hit

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release clients, threads and models (idempotent)."""


# -- async work behind a sync iterator ------------------------------------------------------------


class AsyncRunner:
    """A private event loop in a daemon thread.

    `each(jobs)` starts every job on the loop and yields `(index, result)` in completion order,
    so the caller can store each result before the next one arrives. Closing the iterator
    early cancels what is still running.
    """

    def __init__(self, name: str = "lionloop-llm") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run one coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def each(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> Iterator[tuple[int, T]]:
        done: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

        async def one(i: int, job: Callable[[], Awaitable[T]]) -> None:
            try:
                done.put((i, await job()))
            except asyncio.CancelledError:
                raise
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                done.put((i, _Raised(err)))

        async def drive() -> None:
            tasks = [asyncio.ensure_future(one(i, j)) for i, j in enumerate(jobs)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

        fut = asyncio.run_coroutine_threadsafe(drive(), self.loop)
        fut.add_done_callback(lambda f: done.put((-1, None)))
        try:
            for _ in range(len(jobs)):
                i, result = done.get()
                if i < 0:  # the driver ended before every job reported: surface why
                    err = fut.exception() if not fut.cancelled() else None
                    raise RuntimeError(f"async driver stopped early: {err!r}")
                if isinstance(result, _Raised):
                    raise result.err
                yield i, result
        finally:
            fut.cancel()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


class _Raised:
    __slots__ = ("err",)

    def __init__(self, err: BaseException) -> None:
        self.err = err
