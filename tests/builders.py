"""Tiny, seeded, random-weight models of every supported family, built from configs, and small prompt sets."""

from __future__ import annotations

import torch
import transformers

import mitest as mt

VOCAB = 64


SEQ = 12


_GQA = {
    "llama": (transformers.LlamaConfig, 2),
    "mistral": (transformers.MistralConfig, 2),
    "qwen2": (transformers.Qwen2Config, 1),
}


def _config(family: str):
    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    if family == "gpt2":
        return transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0
        )
    if family in ("gpt_neox", "gpt_neox_serial"):
        return transformers.GPTNeoXConfig(
            **common, use_parallel_residual=family == "gpt_neox", bos_token_id=0, eos_token_id=0
        )
    if family in _GQA:
        config_class, kv_heads = _GQA[family]
        return config_class(**common, num_key_value_heads=kv_heads, bos_token_id=0, eos_token_id=0)
    if family == "bert":
        return transformers.BertConfig(**common)
    raise ValueError(family)


FAMILIES = ("gpt2", "gpt_neox", "gpt_neox_serial", "llama", "mistral", "qwen2", "bert")


def build(family: str, seed: int = 0) -> transformers.PreTrainedModel:
    """A seeded random-weight model of ``family`` with larger-than-default weights (visible effects)."""
    torch.manual_seed(seed)
    config = _config(family)
    model_class = transformers.BertForMaskedLM if family == "bert" else transformers.AutoModelForCausalLM
    model = model_class.from_config(config) if family != "bert" else model_class(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
    return model.eval()


def random_prompts(n: int = 6, seq: int = SEQ, seed: int = 1, corrupted: bool = True) -> mt.Prompts:
    """Random token prompts with answers, wrong answers and an aligned corrupted set."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (n, seq), generator=g)
    other = torch.randint(1, VOCAB, (n, seq), generator=g)
    answers = torch.randint(1, VOCAB, (n,), generator=g)
    wrong = (answers + 1) % VOCAB
    return mt.Prompts(tokens, answers=answers, wrong=wrong, corrupted=other if corrupted else None)


def hooks_left(module: torch.nn.Module) -> list[str]:
    """Names of modules that still carry any forward or backward hook."""
    return [
        name
        for name, m in module.named_modules()
        if m._forward_hooks
        or m._forward_pre_hooks
        or m._backward_hooks
        or m._forward_hooks_with_kwargs
        or m._forward_pre_hooks_with_kwargs
    ]


def word_tokenizer(words: list[str]):
    """A whitespace word-level tokenizer over ``words`` (ids 0.. in order; id 0 is '<pad>')."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate(["<pad>", "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>")


def random_gpt2(n_layer: int = 3, seed: int = 0, with_mlp: bool = True) -> transformers.GPT2LMHeadModel:
    """A GPT-2 (4 heads, d_model 32, vocab 50) with random weights, biases and LayerNorm parameters.

    For checks against hand-written references: every parameter matters, so a reference that skips
    one (a bias, a LayerNorm weight) disagrees. ``with_mlp=False`` zeroes every MLP's output.
    """
    config = transformers.GPT2Config(
        n_layer=n_layer, n_head=4, n_embd=32, vocab_size=50, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ln_" in name:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn_like(param))
            elif param.dim() >= 2:
                param.normal_(0.0, 0.25)
            else:
                param.normal_(0.0, 0.1)
        if not with_mlp:
            for block in model.transformer.h:
                block.mlp.c_proj.weight.zero_()
                block.mlp.c_proj.bias.zero_()
    return model
