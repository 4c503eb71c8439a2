#!/usr/bin/env python3
"""Tiny random DeBERTa-v2 sequence classifier shaped like Prompt-Guard-86M.

Writes tests/fixtures/deberta_tiny/{config.json, model.safetensors, logits.json}.
logits.json: {"input_ids": [[int]], "attention_mask": [[int]], "logits": [[3 floats]],
              "labels": ["BENIGN", "INJECTION", "JAILBREAK"]}
Rows are right-padded with 0 (= [PAD]); id 1 = [CLS] first, id 2 = [SEP] last.
Logits are from the padded batch in eval mode (no dropout); the script checks each
row matches running that row alone, unpadded.
No model dir needed (weights are generated with torch.manual_seed(0)).
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
from transformers import DebertaV2Config, DebertaV2ForSequenceClassification  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "deberta_tiny"

# Fields candle-transformers 0.11.1 debertav2::Config requires (non-Option).
CANDLE_REQUIRED = [
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
    "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps",
    "relative_attention", "max_relative_positions", "position_biased_input", "pos_att_type",
    # Option<> in the struct but required by DebertaV2ContextPooler::load / forward:
    "pooler_hidden_size", "pooler_dropout", "pooler_hidden_act",
]


def r7(x: float) -> float:
    return float(f"{x:.7g}")


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    labels = {0: "BENIGN", 1: "INJECTION", 2: "JAILBREAK"}
    cfg = DebertaV2Config(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=64,
        type_vocab_size=0,
        initializer_range=0.02,
        layer_norm_eps=1e-7,
        relative_attention=True,
        max_relative_positions=-1,
        position_buckets=16,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pad_token_id=0,
        pooler_hidden_size=32,
        pooler_hidden_act="gelu",
        pooler_dropout=0,
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = DebertaV2ForSequenceClassification(cfg)
    # HF init gives near-zero logits and identity LayerNorms; perturb everything so that
    # a wrong tensor mapping / missing bias / wrong LN shows up in the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.eval()

    lengths = [5, 12, 27, 40]  # 27/40 exceed position_buckets/2 -> log buckets exercised
    T = max(lengths)
    g = torch.Generator().manual_seed(1)
    input_ids, attn = [], []
    for n in lengths:
        mid = torch.randint(3, 128, (n - 2,), generator=g).tolist()
        row = [1] + mid + [2]
        input_ids.append(row + [0] * (T - n))
        attn.append([1] * n + [0] * (T - n))
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(attn)
        ).logits
        for i, n in enumerate(lengths):
            single = model(input_ids=torch.tensor([input_ids[i][:n]])).logits[0]
            diff = (single - logits[i]).abs().max().item()
            assert diff < 1e-4, (i, diff)
    print("logits:", logits)

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        print("save_pretrained wrote:", sorted(os.listdir(tmp)))
        for fn in ("config.json", "model.safetensors"):
            shutil.copy(pathlib.Path(tmp) / fn, OUT / fn)

    saved = json.loads((OUT / "config.json").read_text())
    missing = [k for k in CANDLE_REQUIRED if k not in saved]
    assert not missing, f"config.json lacks fields candle needs: {missing}"
    assert saved.get("z_steps", 0) in (0, 1), saved.get("z_steps")
    print("config.json:", json.dumps(saved, indent=1, sort_keys=True))

    with safe_open(str(OUT / "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
        for k in names:
            t = f.get_tensor(k)
            print(f"  {k:70s} {str(t.dtype):14s} {tuple(t.shape)}")
    for need in ("deberta.embeddings.word_embeddings.weight", "pooler.dense.weight",
                 "classifier.weight", "deberta.encoder.rel_embeddings.weight"):
        assert need in names, need

    (OUT / "logits.json").write_text(
        json.dumps(
            {
                "input_ids": input_ids,
                "attention_mask": attn,
                "logits": [[r7(x) for x in row] for row in logits.tolist()],
                "labels": [labels[i] for i in range(3)],
            }
        )
        + "\n"
    )
    for fn in sorted(os.listdir(OUT)):
        print(f"wrote {OUT / fn} ({(OUT / fn).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
