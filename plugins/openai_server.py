"""What the OpenAI-compatible backends ask a server before any call is paid: its `/models` listing,
read by the start-up check (`check_server`: a model the server does not serve, or a reply limit
its context cannot hold, is a ConfigError) and shown by `lionloop run --check` (`server_status`)."""

from __future__ import annotations

import json
import os
from typing import Any

from lionloop import ConfigError, TeacherConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _key(cfg: TeacherConfig) -> str:
    return os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else "EMPTY"


def base_urls(cfg: TeacherConfig) -> list[str]:
    """The section's endpoints as the backend calls them (OpenAI's own where it names none)."""
    return [u.rstrip("/") for u in cfg.base_urls] or [DEFAULT_BASE_URL]


def check_server(cfg: TeacherConfig, path: str, judge_room: int = 0) -> list[str]:
    """Start-up check of the servers at `base_urls` against the config, before any call is paid:
    each one's `/models` listing, where it gives one. A server that names its context length
    (vLLM's `max_model_len`) and serves models by name refuses every request for a model it
    does not list (404) and every one whose `max_tokens` leaves no room for a prompt (400):
    either is a ConfigError naming `path` and the server. `judge_room`: tokens the answers in
    this section's judge prompts may take (the teacher's and the student's replies at their
    limits; 0 if it judges nothing): where they and the judge's own reply cannot fit the
    context, a judge call on long answers fails, so a warning is returned. A server that does
    not answer, or lists no models, is left alone: the run reports its failures by call (and a
    resumed run may need no new call at all)."""
    warnings: list[str] = []
    for url in base_urls(cfg):
        listing = models_listing(url, _key(cfg))
        if listing is None:
            continue
        served = {str(m.get("id")): m for m in listing if isinstance(m, dict) and m.get("id")}
        context = [m.get("max_model_len") for m in served.values() if isinstance(m.get("max_model_len"), int)]
        if not context:  # no vLLM-style listing: whether an unlisted name is served is the server's to say
            continue
        model = served.get(str(cfg.model))
        if model is None:
            raise ConfigError(f"{path}.model: the server at {url} does not serve {cfg.model!r}; it serves "
                              f"{', '.join(repr(m) for m in served)}")
        limit = model.get("max_model_len")
        if not isinstance(limit, int):
            continue
        if cfg.max_tokens >= limit:
            raise ConfigError(f"{path}.max_tokens: {cfg.max_tokens} leaves no room for a prompt in the "
                              f"{limit}-token context of {cfg.model!r} at {url} (every request would be refused); "
                              f"lower it, or serve a longer context (vllm serve --max-model-len)")
        if judge_room and judge_room + cfg.max_tokens > limit:
            warnings.append(
                f"{path}: {cfg.model!r} at {url} has a {limit}-token context; a judge prompt holds two answers "
                f"of up to {judge_room} tokens together and the judge replies with up to {cfg.max_tokens} "
                f"({judge_room + cfg.max_tokens} before the instructions and the question), so judge calls "
                "on long answers will be refused (HTTP 400). Serve a longer context (vllm serve "
                "--max-model-len) or lower teacher.max_tokens / student.max_new_tokens")
    return warnings


def server_status(cfg: TeacherConfig) -> list[str]:
    """One line per server at `base_urls`: the models its `/models` lists (with the context length
    where it names one), or why it gave no listing. A GET of the listing only: nothing is paid."""
    out = []
    for url in base_urls(cfg):
        why: list[str] = []
        listing = models_listing(url, _key(cfg), why=why)
        if listing is None:
            out.append(f"{url}: no model listing ({why[0] if why else 'none'}); the run will try its calls there")
            continue
        served = [m for m in listing if isinstance(m, dict) and m.get("id")]
        names = ", ".join(f"{m['id']!r}" + (f" ({m['max_model_len']}-token context)"
                                             if isinstance(m.get("max_model_len"), int) else "") for m in served)
        mark = "" if any(str(m["id"]) == str(cfg.model) for m in served) or not served else \
            f"; {cfg.model!r} is not among them"
        out.append(f"{url}: serves {names or 'no model it lists'}{mark}")
    return out


def models_listing(url: str, key: str, timeout_s: float = 5.0, why: list[str] | None = None) -> list[Any] | None:
    """The `data` of GET `url`/models, or None where the server gives no such listing (not up,
    no such route, refused, not JSON): a start-up check that cannot ask leaves the run to try.
    `why`: a list the reason for a None is appended to."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {key}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the calls: no proxy from the env
    try:
        with opener.open(req, timeout=timeout_s) as resp:  # noqa: S310 - the configured endpoint
            data = json.loads(resp.read(1 << 22))
    except (OSError, ValueError, urllib.error.URLError) as err:
        if why is not None:
            why.append(str(getattr(err, "reason", None) or err) or type(err).__name__)
        return None
    listing = data.get("data") if isinstance(data, dict) else None
    if not isinstance(listing, list):
        if why is not None:
            why.append("the reply holds no `data` list")
        return None
    return listing
