"""Reference token ids and chat-template renderings for the default
generator's GGUF tokenizer.

    python scripts/reference/gguf_tokenizer.py [MODEL GGUF_FILE FIXTURE]

(default: the SmolLM2 generator into gguf_tokenizer.json; the Qwen2 one is
`qwen2.5-coder-0.5b-instruct-q4_k_m qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
gguf_tokenizer_qwen2.json`)

Builds a corpus of at least 200 strings (SQuAD questions and paragraph
snippets, code, unicode, digits, whitespace runs, chat markup) and encodes
each without BOS with transformers' tokenizer built from the same GGUF file
(`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, needs `pip install
gguf`). When llama-cpp-python is installed, llama.cpp's own tokenizer is run
too and every disagreement is printed (the fixture keeps transformers' ids).
Writes tests/fixtures/FIXTURE.
"""
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("RAGD_MODELS_DIR", ROOT / "models" / "cache"))
MODEL, GGUF, FIXTURE = (sys.argv[1:4] if len(sys.argv) == 4
                        else ("smollm2-135m-instruct-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf_tokenizer.json"))
GGUF_DIR = MODELS / MODEL
SQUAD = Path(os.environ.get("SQUAD", ROOT.parent / "shared" / "data" / "squaddev_v1.1.json"))


def corpus():
    out = []
    doc = json.load(open(SQUAD))
    paras = [p for a in doc["data"] for p in a["paragraphs"]]
    out += [p["qas"][0]["question"] for p in paras[:: max(1, len(paras) // 80)]][:80]
    out += [p["context"][:300] for p in paras[:: max(1, len(paras) // 40)]][:40]
    out += [
        "def add(a, b):\n    return a + b\n",
        "fn main() {\n    println!(\"{}\", 1 + 2);\n}",
        "for (int i = 0; i < 10; ++i) { sum += i; }",
        "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)",
        "<div class=\"main\"><p>Hello</p></div>",
        "const f = async (x) => await fetch(`/api/${x}`);",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "#include <stdio.h>\nint main(void) { return 0; }",
        "    indented\n\tTabbed\n\n\nThree newlines",
    ]
    out += [
        "naïve café résumé", "Zürich Straße Übermaß", "日本語のテキストです。", "中文分词测试",
        "한국어 문장입니다", "Привет, как дела?", "مرحبا بالعالم", "שלום עולם", "Ελληνικά γράμματα",
        "emoji 🤖🚀🎉 and 👩‍👩‍👧‍👦 family", "math ∑ ∫ √ ∞ ≠ ≤", "arrows → ← ↑ ↓", "quotes “smart” ‘single’",
        "mixed 中文 and English 123", "ß ẞ ﬁ ligature", "\u00a0non-breaking\u00a0space", "zero\u200bwidth",
    ]
    out += [
        "0", "7", "42", "123", "2024", "12345", "3.14159", "1,000,000", "-17", "1e10", "0x1F", "v1.2.3",
        "phone 555-0123", "2026-11-23T22:09:17Z", "$19.99", "50%", "99 bottles", "1st 2nd 3rd 4th",
    ]
    out += [
        " ", "  ", "   ", "\n", "\n\n", "\t", " \t \n", "a  b", "a   b", "a    b", "trailing   ",
        "   leading", "line1\nline2", "line1\r\nline2", "x" + " " * 20 + "y", "\n" * 5 + "end",
    ]
    out += [
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>", "text <|im_end|> more", "<repo_name>ragd<file_sep>",
        "don't I'll we've they're it's", "HELLO World MiXeD CaSe", "URL https://example.com/a?b=c&d=e",
        "email someone@example.org", "hashtag #RAG @user", "a.b.c.d", "...", "!!!???", "(parens) [brackets] {braces}",
        "under_score camelCase kebab-case", "Supercalifragilisticexpialidocious", "antidisestablishmentarianism",
        "The quick brown fox jumps over the lazy dog.", "Tokenizers split text into subwords.",
        "Pack my box with five dozen liquor jugs!", "café\ncafe\u0301 (combining accent)",
    ]
    return out


def main():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(GGUF_DIR), gguf_file=GGUF)
    texts = corpus()
    assert len(texts) >= 200, len(texts)
    cases = [{"text": t, "ids": tok.encode(t, add_special_tokens=False)} for t in texts]
    try:
        from llama_cpp import Llama

        llm = Llama(model_path=str(GGUF_DIR / GGUF), vocab_only=True, verbose=False)
        bad = 0
        for c in cases:
            ids = llm.tokenize(c["text"].encode(), add_bos=False, special=True)
            if ids != c["ids"]:
                bad += 1
                print("llama.cpp differs:", repr(c["text"][:60]), ids[:12], c["ids"][:12])
        print(f"llama.cpp agrees on {len(cases) - bad}/{len(cases)}")
    except ImportError:
        print("llama-cpp-python not installed: transformers only")
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of Peru?"}],
        [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke\nabout cats."},
        ],
        [{"role": "user", "content": "unicode: 日本語 🤖 and <tags> & \"quotes\""}],
    ]
    chat_cases = []
    for msgs in conversations:
        for gen in (True, False):
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            chat_cases.append({"messages": msgs, "add_generation_prompt": gen, "text": text})
    out = ROOT / "tests" / "fixtures" / FIXTURE
    fixture = {"gguf": GGUF, "reference": "transformers GGUF tokenizer", "cases": cases, "chat_cases": chat_cases}
    out.write_text(json.dumps(fixture, ensure_ascii=False, indent=0))
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
