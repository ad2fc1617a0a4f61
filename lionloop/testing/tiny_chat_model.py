"""A tiny random chat model with a byte-level tokenizer and a chat template: what a real vLLM
server (or any HF loader) can serve in the tests in seconds, with no download."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

#: Minimal chat template for :func:`build_tiny_chat_model`.  vLLM refuses chat
#: requests for a tokenizer without a chat template.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")


def _build_byte_tokenizer(model_max_length: int):  # -> PreTrainedTokenizerFast
    """Byte-level BPE tokenizer (256 byte symbols + specials, no merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(_SPECIAL_TOKENS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    assert len(vocab) == 256 + len(_SPECIAL_TOKENS)

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(_SPECIAL_TOKENS))

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=model_max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_chat_model(
    out_dir: Path,
    seed: int = 0,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 1024,
) -> Path:
    """Write a tiny random-weight Llama chat model + byte tokenizer to ``out_dir``.

    Nothing is downloaded.  The default shape (hidden 128, 4 heads -> head_dim
    32, 2 layers, ~0.4M parameters, float32, tied embeddings) is chosen
    because vLLM's CPU attention backend only supports head sizes >= 32.
    The output is random garbage, but every OpenAI endpoint works, including
    chat (the tokenizer carries :data:`CHAT_TEMPLATE`).

    Returns ``out_dir``.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    head_dim = hidden_size // num_heads
    if hidden_size % num_heads or head_dim < 32:
        raise ValueError(
            f"hidden_size/num_heads must be an integer >= 32 for vLLM's CPU backend "
            f"(got {hidden_size}/{num_heads})"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_byte_tokenizer(max_position_embeddings)
    pad_id, bos_id, eos_id = (tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL_TOKENS)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="float32",
    )
    # Seed all RNGs used by weight init, and restore the caller's torch RNG state.
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32).eval()
    finally:
        torch.random.set_rng_state(rng_state)

    model.generation_config = GenerationConfig(
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    logger.info(
        "wrote tiny chat model (%d params) to %s",
        sum(p.numel() for p in model.parameters()),
        out_dir,
    )
    return out_dir
