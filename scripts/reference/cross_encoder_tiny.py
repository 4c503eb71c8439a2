#!/usr/bin/env python3
"""Tiny random cross-encoders (rerankers) and the scores transformers gives them.

Writes, for each of two models:
  tests/fixtures/cross_encoder_tiny/   BertForSequenceClassification, num_labels=1
                                       (shaped like cross-encoder/ms-marco-MiniLM-L-6-v2)
  tests/fixtures/xlmr_reranker_tiny/   XLMRobertaForSequenceClassification, num_labels=1
                                       (shaped like BAAI/bge-reranker-base)
the files {config.json, model.safetensors, tokenizer.json, scores.json}.

scores.json: {"pairs": [[query, document]], "input_ids": [[int]] (unpadded, what the
tokenizer gave the pair with truncation=True, max_length=MAX_LEN: longest_first),
"token_type_ids": [[int]], "logits": [float], "scores": [float] (sigmoid of the
logit), "max_length": int}.

The tokenizer is a small WordPiece vocabulary made from the texts below (BERT's
`[CLS] A [SEP] B [SEP]` post-processor; for XLM-R the same vocabulary with
`<s> A </s></s> B </s>`). Logits are from the padded batch in eval mode; the
script checks each row matches running that row alone, unpadded.
No model dir needed (weights are generated with torch.manual_seed).
"""
import json
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
MAX_LEN = 64

# Fields candle-transformers 0.11.1 bert::Config requires (non-Option).
CANDLE_REQUIRED = [
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id",
]

LONG_DOC = (
    "The reset procedure of the router takes several steps. First unplug the power cable "
    "and wait ten seconds. Then hold the reset button with a paper clip while you plug the "
    "cable back in, and keep holding it until the lights blink twice. The router restores "
    "its factory settings, forgets every saved network and restarts with the default "
    "password printed on the label under the device."
)
PAIRS = [
    ["how do i reset the router", "Hold the reset button for ten seconds to restore factory settings."],
    ["how do i reset the router", "To bake bread, mix flour, water, salt and yeast."],
    ["capital of france", "Paris is the capital and largest city of France."],
    ["capital of france", "Berlin is the capital of Germany."],
    ["what is the boiling point of water", "Water boils at 100 degrees at sea level."],
    ["what is the boiling point of water", ""],
    ["how do i reset the router", LONG_DOC],
    [LONG_DOC, LONG_DOC + " " + LONG_DOC],
]
CORPUS = [t for pair in PAIRS for t in pair] + [
    "the a an of to in is and or it on with for by as at be this that from",
]


# Sizes both models share.
SIZES = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_act="gelu",
    num_labels=1,
)


def r7(x: float) -> float:
    return float(f"{x:.7g}")


def wordpiece(specials: list[str]) -> Tokenizer:
    """A WordPiece tokenizer over a vocabulary made from CORPUS (deterministic, unlike
    the trainer): every character alone and as `##c`, a few suffixes, and the words of
    at most 6 characters; longer words split into pieces."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = sorted({w for t in CORPUS for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t))})
    chars = sorted({c for w in words for c in w})
    vocab = list(specials)
    for t in chars + ["##" + c for c in chars] + ["##ing", "##s", "##ed"] + [w for w in words if len(w) <= 6]:
        if t not in vocab:
            vocab.append(t)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=specials[1]))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    return tok


def perturb(model: torch.nn.Module) -> None:
    # HF init gives near-zero logits and identity LayerNorms; perturb everything so that
    # a wrong tensor mapping / missing bias / wrong LN / ignored token type shows up.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.eval()


def write(out: pathlib.Path, model, hf_tok: PreTrainedTokenizerFast, tok: Tokenizer, use_types: bool) -> None:
    enc = hf_tok(
        [q for q, _ in PAIRS], [d for _, d in PAIRS],
        padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt", return_token_type_ids=True,
    )
    feed = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if use_types:
        feed["token_type_ids"] = enc["token_type_ids"]
    with torch.no_grad():
        logits = model(**feed).logits[:, 0]
        for i in range(len(PAIRS)):
            n = int(enc["attention_mask"][i].sum())
            single = model(**{k: v[i : i + 1, :n] for k, v in feed.items()}).logits[0, 0]
            diff = abs(single.item() - logits[i].item())
            assert diff < 1e-4, (i, diff)
    print(out.name, "logits:", logits)
    lengths = enc["attention_mask"].sum(1).tolist()
    assert max(lengths) == MAX_LEN, "some pair must be truncated"
    assert len(set(lengths)) >= 5, lengths

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for fn in ("config.json", "model.safetensors"):
            shutil.copy(pathlib.Path(tmp) / fn, out / fn)
    tok.save(str(out / "tokenizer.json"))
    saved = json.loads((out / "config.json").read_text())
    missing = [k for k in CANDLE_REQUIRED if k not in saved]
    assert not missing, f"config.json lacks fields candle needs: {missing}"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        for k in sorted(f.keys()):
            print(f"  {k:60s} {tuple(f.get_tensor(k).shape)}")
    rows = [ids[:n] for ids, n in zip(enc["input_ids"].tolist(), lengths)]
    types = [t[:n] for t, n in zip(enc["token_type_ids"].tolist(), lengths)]
    (out / "scores.json").write_text(
        json.dumps(
            {
                "max_length": MAX_LEN,
                "pairs": PAIRS,
                "input_ids": rows,
                "token_type_ids": types,
                "logits": [r7(x) for x in logits.tolist()],
                "scores": [r7(x) for x in torch.sigmoid(logits).tolist()],
            }
        )
        + "\n"
    )
    for fn in sorted(os.listdir(out)):
        print(f"wrote {out / fn} ({(out / fn).stat().st_size} bytes)")


def bert() -> None:
    torch.manual_seed(0)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = wordpiece(specials)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        max_position_embeddings=MAX_LEN,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        **SIZES,
    )
    model = BertForSequenceClassification(cfg)
    perturb(model)
    write(FIXTURES / "cross_encoder_tiny", model, hf_tok, tok, use_types=True)


def xlmr() -> None:
    torch.manual_seed(1)
    specials = ["<s>", "<unk>", "<pad>", "</s>", "<mask>"]
    tok = wordpiece(specials)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    pad = tok.token_to_id("<pad>")
    cfg = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        # Positions start at pad_token_id + 1, as in XLM-R (514 = 512 + 2).
        max_position_embeddings=MAX_LEN + pad + 1,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        **SIZES,
    )
    model = XLMRobertaForSequenceClassification(cfg)
    perturb(model)
    write(FIXTURES / "xlmr_reranker_tiny", model, hf_tok, tok, use_types=False)


def main() -> None:
    torch.set_num_threads(2)
    bert()
    xlmr()


if __name__ == "__main__":
    main()
