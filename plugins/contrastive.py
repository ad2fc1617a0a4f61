"""Contrastive decoding for SCOTT (Wang et al. 2023) on a causal LM whose token scores we can read.

SCOTT asks the teacher for a rationale of the gold answer a* and picks each token by how much more
likely it is given a* than given a perturbed answer a':

    t_i = argmax_t  log P(t | q, a*, t_<i) + strength * (log P(t | q, a*, t_<i) - log P(t | q, a', t_<i))

(strength 1 is the paper's plausibility term plus its contrast term; strength 0 is plain greedy
decoding). Both prompts are decoded in step, each with its own KV cache. A text-only teacher (an
OpenAI-compatible server, the oracle) cannot do this: it answers the same request with a plain
rationalisation of the answer it is given. The `hf` backend runs this for every request that
offers a `contrast_request()` (see `plugins/scott.py`).
"""

from __future__ import annotations

from typing import Any


def contrastive_scores(pos_logits: Any, neg_logits: Any, strength: float) -> Any:
    """The next-token scores: (1 + strength) log p_pos - strength log p_neg (log-softmaxed rows)."""
    import torch

    lp = torch.log_softmax(pos_logits.float(), dim=-1)
    if strength == 0:
        return lp
    ln = torch.log_softmax(neg_logits.float(), dim=-1)
    return (1 + strength) * lp - strength * ln


def _cache(out: Any) -> Any:
    """The KV cache a forward pass returns (`cache` in transformers 5, `past_key_values` before)."""
    got = out.get("cache") if hasattr(out, "get") else None
    return got if got is not None else getattr(out, "past_key_values", None)


def contrastive_generate(model: Any, tok: Any, prompt: str, contrast: str, max_new_tokens: int,
                         strength: float = 1.0) -> tuple[str, int, bool]:
    """Greedy contrastive decoding of one reply: (text, completion tokens, stopped at EOS).

    `prompt` and `contrast` are the rendered chat texts of the request and of its contrast (the
    same request with the perturbed answer); no special tokens are added (chat templates carry
    their own)."""
    import torch

    def ids(text: str) -> Any:
        return tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)

    eos = tok.eos_token_id
    pos_in, neg_in = ids(prompt), ids(contrast)
    pos_past = neg_past = None
    out: list[int] = []
    stopped = False
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            p = model(input_ids=pos_in, cache=pos_past, use_cache=True)
            n = model(input_ids=neg_in, cache=neg_past, use_cache=True)
            pos_past, neg_past = _cache(p), _cache(n)
            token = int(contrastive_scores(p.logits[0, -1], n.logits[0, -1], strength).argmax())
            if token == eos:
                stopped = True
                break
            out.append(token)
            pos_in = neg_in = torch.tensor([[token]], device=model.device)
    return tok.decode(out, skip_special_tokens=True), len(out), stopped
