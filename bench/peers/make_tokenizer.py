"""Build a tiny tokenizer directory offline, for peer load tools that insist on a tokenizer.

AIPerf and GuideLLM count prompt and output tokens with a Hugging Face tokenizer and, given a model
name, download one from the hub. Pointed at a local directory with ``tokenizer.json`` and
``tokenizer_config.json`` they load it with ``transformers.AutoTokenizer.from_pretrained(dir)`` and need
no network (run them with ``HF_HUB_OFFLINE=1``). The tokenizer is a byte-level BPE trained here on a few
sentences: byte-level, so any text tokenizes without unknown tokens; tiny, so it builds in milliseconds.
Its token counts are not the reference target's, which is why the peers bench counts output on the
server side (``eyechart_completion_tokens_total``), not from the tools' own token figures.

    /tmp/peers-venv/bin/python bench/peers/make_tokenizer.py /tmp/peers-work/tokenizer

Needs only the ``tokenizers`` package (any venv that has it; the peers venv does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A receipt from the corner shop lists bread, milk, eggs and a total of 12.40 dollars.",
    "Describe the image: a red bicycle leans against a stone wall under a window.",
    "Read the text in this picture and answer in one short sentence.",
    "Compare the two charts and say which quarter had the highest revenue.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Once upon a time there was a small village by the sea where every house was painted blue.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ; : ! ? ' \" ( ) [ ] { } - _ / \\ @ # $ % & * + =",
]
EOS = "<|endoftext|>"


def build(out: Path, vocab_size: int = 600) -> Path:
    """Train a byte-level BPE on SENTENCES and save it as a transformers-loadable directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 4, trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 131072,
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}) + "\n"
    )
    # Some tools read the model config next to the tokenizer (e.g. for a context length).
    (out / "config.json").write_text(
        json.dumps(
            {
                "model_type": "gpt2",
                "vocab_size": tok.get_vocab_size(),
                "n_positions": 131072,
                "bos_token_id": tok.token_to_id(EOS),
                "eos_token_id": tok.token_to_id(EOS),
            }
        )
        + "\n"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="directory to write (created if missing)")
    ap.add_argument("--vocab-size", type=int, default=600)
    args = ap.parse_args()
    path = build(args.out, args.vocab_size)
    print(f"tokenizer written to {path}")


if __name__ == "__main__":
    main()
