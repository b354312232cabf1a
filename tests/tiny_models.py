"""A tiny causal LM saved to a folder: a 2-layer Llama with random weights and a word-level tokenizer
with a chat template. It runs the real TransformersBackend path (chat template, left padding,
forward pass) in about a second; its vocabulary decides which answers it can give."""

from __future__ import annotations

from pathlib import Path


def save_tiny_llama(folder: Path, words: list[str]) -> Path:
    """Save the model and tokenizer to ``folder``; ``words`` is the whole vocabulary, starting with
    ``<pad>``, ``<unk>``, ``<s>``, ``</s>``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=3,
        bos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
