"""The two jobs that run inside the vLLM venv, started as ``python -I <this file> _build-model`` or
``_check-args`` with a JSON request on stdin.

Only the standard library is imported at the top: ``-I`` keeps the caller's directory (which holds
a ``vllm.py`` of its own) and PYTHON* variables out of the import path, so this file must stand
alone. torch, transformers, tokenizers and vLLM are imported inside the functions, from the venv.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve()

_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
)
# Built-in training text for the tokenizer; varied enough to yield several
# hundred merges. The vocabulary is padded with plain filler tokens up to the
# requested size, so every id the model can emit decodes to text.
_TRAINING_TEXT = """\
San Francisco is a city on the tip of a peninsula between the Pacific Ocean and
the bay. Fog rolls in over the hills in the summer and the cable cars climb
steep streets past painted houses. Write a story about san francisco, about the
bridge, the ferry building, the markets and the people who live there.
A model server answers requests for completions and chat completions. Each
request carries a prompt, a number of tokens to generate and a temperature.
The scheduler batches running requests, keeps a cache of keys and values for
every token, and reports how many requests are waiting and how full the cache is.
Autoscalers read those numbers and add replicas when the queue grows.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor
jugs. How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 16 32 64 128 256 512 1024 2048 4096.
Once upon a time there was a small language model that knew only a few hundred
words. It could count, it could greet, and it could tell very short stories
about the sea, the mountains, the rain, the sun, the moon and the stars.
Hello! How are you today? I am fine, thank you. What would you like to know?
The weather is cold in the morning, warm in the afternoon and windy at night.
Engineers deploy services to clusters, watch dashboards, read logs, fix bugs
and write tests so that the next change is safe to ship.
"""


def build_model_main() -> None:
    """Runs inside the vLLM venv: reads a JSON spec on stdin, writes the model."""
    spec = json.loads(sys.stdin.read())
    dest = Path(spec["dest"])
    dest.mkdir(parents=True, exist_ok=True)
    config = dict(spec["config"])
    vocab_size = int(config["vocab_size"])
    if "model_type" not in config:
        import transformers

        model_class = getattr(transformers, config["architectures"][0], None)
        if model_class is None or not hasattr(model_class, "config_class"):
            raise SystemExit(f"transformers has no model class {config['architectures'][0]!r}")
        config = {"model_type": model_class.config_class.model_type, **config}

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 4096), special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=1,
        show_progress=False,
    )
    lines = _TRAINING_TEXT.splitlines(keepends=True)
    tokenizer.train_from_iterator(lines * 4, trainer=trainer)
    # Pad the vocabulary with ordinary (non-special) tokens up to the model's
    # vocab size, so any sampled id decodes to some text.
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    if len(vocab) > vocab_size:
        raise SystemExit(f"tokenizer has {len(vocab)} tokens, more than vocab_size {vocab_size}")
    next_id = max(vocab.values()) + 1
    filler = 0
    while next_id < vocab_size:
        token = f"~w{filler}"
        filler += 1
        if token not in vocab:
            vocab[token] = next_id
            next_id += 1
    tokenizer = Tokenizer.from_str(json.dumps(data))
    ids = {tok: tokenizer.token_to_id(tok) for tok in _SPECIAL_TOKENS}
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", ids["<|begin_of_text|>"])],
    )
    if tokenizer.get_vocab_size(with_added_tokens=True) != vocab_size:
        raise SystemExit("tokenizer size does not match vocab_size")
    tokenizer.save(str(dest / "tokenizer.json"))

    bos, eos, pad = ids["<|begin_of_text|>"], ids["<|end_of_text|>"], ids["<|pad|>"]
    eot = ids["<|eot_id|>"]
    config.update({"bos_token_id": bos, "eos_token_id": [eos, eot], "pad_token_id": pad})
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": "<|pad|>",
        "model_max_length": int(spec["max_context"]),
        "clean_up_tokenization_spaces": False,
        "chat_template": _CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(ids[tok]): {"content": tok, "special": True, "lstrip": False, "rstrip": False,
                            "normalized": False, "single_word": False}
            for tok in _SPECIAL_TOKENS
        },
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (dest / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|pad|>"},
        indent=2) + "\n")
    (dest / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": bos, "eos_token_id": [eos, eot], "pad_token_id": pad}, indent=2) + "\n")

    if spec["weights"]:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(int(spec["seed"]))
        dtype = getattr(torch, config.get("torch_dtype", "bfloat16"))
        hf_config = LlamaConfig(**{k: v for k, v in config.items()
                                   if k not in ("architectures", "model_type", "torch_dtype")})
        model = LlamaForCausalLM(hf_config).to(dtype)
        model.save_pretrained(str(dest), safe_serialization=True)
        # save_pretrained rewrites these two; restore our exact versions.
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dest / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": bos, "eos_token_id": [eos, eot], "pad_token_id": pad}, indent=2) + "\n")


def check_args_main() -> None:
    """Runs inside the vLLM venv: parse each JSON arg list, print JSON verdicts."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    except ImportError:  # vLLM releases before the launchers package
        from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    results = []
    for args in json.loads(sys.stdin.read()):
        captured = io.StringIO()
        error = None
        try:
            with redirect_stderr(captured), redirect_stdout(io.StringIO()):
                parsed = make_arg_parser(FlexibleArgumentParser(prog="vllm")).parse_args(args)
                validate_parsed_serve_args(parsed)
        except SystemExit as exc:
            lines = [ln for ln in captured.getvalue().splitlines() if "error:" in ln]
            error = lines[-1] if lines else f"parser exited with status {exc.code}"
        except Exception as exc:  # validation errors are reported, not raised
            error = f"{type(exc).__name__}: {exc}"
        results.append({"args": args, "error": error})
    print(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1:2] == ["_build-model"]:
        build_model_main()
    elif sys.argv[1:2] == ["_check-args"]:
        check_args_main()
    else:
        sys.exit(f"usage: python -I {SCRIPT.name} _build-model|_check-args < request.json")
