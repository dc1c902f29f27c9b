"""Reference token ids for the SmolLM2 golden tests (tests/common/mod.rs). Documentation; not run by CI.

Three references are computed from the SmolLM2-135M-Instruct GGUF:
  1. the Python `tokenizers` library assembled by hand from the GGUF vocabulary and merges with the
     pre-tokenizer of SmolLM2's published tokenizer.json (Digits(individual) then ByteLevel, no prefix space);
  2. transformers' own GGUF tokenizer converter (`convert_gguf_tokenizer`, the code behind
     AutoTokenizer.from_pretrained(dir, gguf_file=name); called directly because that entry point's GGUF
     reader imports torch, which is not needed for tokenizers);
  3. llama.cpp itself through llama-cpp-python (vocab_only), when it is installed: an implementation that
     shares no code with `tokenizers`.
The golden values are those of (1); (3) agrees on every string (llama-cpp-python 0.3.36). transformers 5.23
does not know the GGUF pre-tokenizer name "smollm" and falls back to the plain GPT-2 regex, so (2) differs
where digits follow a run of spaces (reported on stderr).

Setup (outside the repository; llama-cpp-python builds llama.cpp from source, several minutes):
  python3 -m venv /tmp/tokref && /tmp/tokref/bin/pip install transformers tokenizers gguf sentencepiece protobuf
  /tmp/tokref/bin/pip install llama-cpp-python   # optional, reference (3)
  /tmp/tokref/bin/python crates/vptq-tokenizer/tests/golden/make_golden.py
"""

import json
import os
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

CACHE = os.environ.get("VPTQ_CACHE", os.path.expanduser("~/.cache/vptq"))
DIR = os.path.join(CACHE, "models")
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

STRINGS = [
    "12345",
    "café 日本語 🙂",
    "a  \n\n   b\t\tc",
    "<|im_start|>user\nhi<|im_end|>",
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! It's 2024, isn't it? x=3.14 ok",
    " 123 abc  ",
    "🙂🙂 naïve",
    # Digits are split off before the GPT-2 regex sees the spaces in front of them, so "  1" gives
    # "ĠĠ" + "1" here but "Ġ" + "Ġ" + "1" with the plain GPT-2 regex.
    "a  1 and  22",
]


READER = GGUFReader(os.path.join(DIR, NAME))


def strings(key):
    field = READER.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def scalar(key):
    field = READER.fields[key]
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8") if field.types[0].name == "STRING" else value.tolist()[0]


def with_transformers():
    types_field = READER.fields["tokenizer.ggml.token_type"]
    tokenizer_dict = {
        "tokenizer_type": scalar("tokenizer.ggml.model"),
        "pre_tokenizer_type": scalar("tokenizer.ggml.pre"),
        "tokens": strings("tokenizer.ggml.tokens"),
        "merges": strings("tokenizer.ggml.merges"),
        "token_type": [int(types_field.parts[i][0]) for i in types_field.data],
    }
    backend, _ = convert_gguf_tokenizer(scalar("general.architecture"), tokenizer_dict)
    return backend


def by_hand():
    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    types_field = READER.fields["tokenizer.ggml.token_type"]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def with_llama_cpp():
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama-cpp-python not installed: reference (3) skipped", file=sys.stderr)
        return None
    model = Llama(os.path.join(DIR, NAME), vocab_only=True, verbose=False)
    return lambda text: model.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def main():
    hf = with_transformers()
    hand = by_hand()
    llama = with_llama_cpp()
    out = {}
    for s in STRINGS:
        a = hf.encode(s, add_special_tokens=False).ids
        b = hand.encode(s, add_special_tokens=False).ids
        if a != b:
            print(f"MISMATCH for {s!r}: transformers {a} vs by-hand {b}", file=sys.stderr)
        if llama is not None and llama(s) != b:
            print(f"MISMATCH for {s!r}: llama.cpp {llama(s)} vs by-hand {b}", file=sys.stderr)
        out[s] = {"ids": b, "tokens": hand.encode(s, add_special_tokens=False).tokens}
    for s, v in out.items():
        print(f"{json.dumps(s, ensure_ascii=False)}: {v['ids']}  # {v['tokens']}")


if __name__ == "__main__":
    main()
