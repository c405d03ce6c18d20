"""Tiny, deterministic stand-ins for the real models, built offline in about a second.

- `make_tiny_tokenizer`: a BPE tokenizer trained on a few KB of this file's own medical-ish text
  (plus the prompt instructions, so prompts tokenize compactly), wrapped as a
  `PreTrainedTokenizerFast` with Mistral's special tokens and a Mistral-style chat template.
- `make_tiny_mistral`: a 2-layer, 64-wide `MistralForCausalLM` saved with its tokenizer, so the
  folder is a complete local "base model" that `from_pretrained` loads like a Hub id.
- `write_tiny_corpus` / `tiny_questions`: 14 one-topic leaflets in the same words (a jsonl corpus
  with MedQuAD-style `focus` and `qtype`) and questions about them with their gold document, the
  raw material of `medrag.sft_data` in the tests.
- `make_tiny_adapter`: a LoRA adapter on q_proj/v_proj, `steps` optimiser steps (one by default)
  from a random lora_B (peft starts lora_B at zero, which makes an untrained adapter a no-op), so
  adapters with different seeds or texts change greedy output in different ways.

Shortcuts on purpose: Metaspace pre-tokenization without byte fallback (every token decodes to
valid text, so streamed deltas are stable; unseen characters become <unk>), and a few training
steps on the base model so greedy generation emits varied, word-like tokens rather than one
token repeated; the output is still gibberish, which is all the tests need.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

from medrag.prompts import CANNOT_ANSWER_PHRASE, GROUNDED_INSTRUCTIONS, USER_TEMPLATE

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role']=='user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]

# The project's own writing: short, plain statements in the register of patient leaflets.
MEDICAL_TEXT = """\
Diabetes is a condition in which the level of sugar in the blood is too high.
Type 1 diabetes happens when the body cannot make insulin. Type 2 diabetes happens when the body
does not use insulin well. Common signs are feeling very thirsty, passing urine often and feeling tired.
High blood pressure often has no symptoms. It raises the risk of heart attack and stroke.
Eating less salt, staying active and keeping a healthy weight can lower blood pressure.
Asthma is a common lung condition that causes breathing difficulties. An inhaler can relieve symptoms.
A cough, wheezing and a tight chest are signs of asthma. Triggers include dust, smoke and cold air.
Influenza is an infection caused by a virus. It spreads through coughs and sneezes.
Rest, fluids and pain relief help most people recover within a week. A yearly vaccine lowers the risk.
Anaemia means the blood has fewer red blood cells than normal. Iron deficiency is a common cause.
Migraine is a headache that often comes with nausea and sensitivity to light and sound.
Chickenpox is a common illness in children that causes an itchy, spotty rash.
Kidney stones can cause severe pain in the side and back. Drinking plenty of water helps prevent them.
Sunburn damages the skin. Use sunscreen, wear a hat and stay in the shade in the middle of the day.
Dehydration happens when the body loses more fluid than it takes in. Signs include dark urine and dizziness.
Antibiotics treat infections caused by bacteria. They do not work against viruses such as colds.
A fever is a high temperature of 38 degrees or more. Children with a fever should drink plenty of fluids.
Eczema makes the skin dry, itchy and cracked. Moisturisers help keep the skin soft.
Osteoporosis weakens bones and makes them more likely to break. Calcium and vitamin D support bone health.
Question: What are the symptoms of diabetes? Answer: Feeling very thirsty and passing urine often [1].
Question: How can I lower my blood pressure? Answer: Eat less salt and stay active [2].
"""


TINY_CORPUS = {  # doc id -> (title, text): MEDICAL_TEXT's statements, one topic per document
    "doc:diabetes": ("Diabetes", " ".join(MEDICAL_TEXT.splitlines()[0:3])),
    "doc:blood-pressure": ("High blood pressure", " ".join(MEDICAL_TEXT.splitlines()[3:5])),
    "doc:asthma": ("Asthma", " ".join(MEDICAL_TEXT.splitlines()[5:7])),
    "doc:influenza": ("Influenza", " ".join(MEDICAL_TEXT.splitlines()[7:9])),
    "doc:anaemia": ("Anaemia", MEDICAL_TEXT.splitlines()[9]),
    "doc:migraine": ("Migraine", MEDICAL_TEXT.splitlines()[10]),
    "doc:chickenpox": ("Chickenpox", MEDICAL_TEXT.splitlines()[11]),
    "doc:kidney-stones": ("Kidney stones", MEDICAL_TEXT.splitlines()[12]),
    "doc:sunburn": ("Sunburn", MEDICAL_TEXT.splitlines()[13]),
    "doc:dehydration": ("Dehydration", MEDICAL_TEXT.splitlines()[14]),
    "doc:antibiotics": ("Antibiotics", MEDICAL_TEXT.splitlines()[15]),
    "doc:fever": ("Fever", MEDICAL_TEXT.splitlines()[16]),
    "doc:eczema": ("Eczema", MEDICAL_TEXT.splitlines()[17]),
    "doc:osteoporosis": ("Osteoporosis", MEDICAL_TEXT.splitlines()[18]),
}
QUESTION_TEMPLATES = ("What is {t}?", "What should I know about {t}?", "Tell me about {t}.")


def write_tiny_corpus(path: str | Path) -> Path:
    """The 14 leaflets as a corpus jsonl (id, title, text, source, focus, qtype)."""
    import json

    rows = [
        {"id": i, "title": t, "text": x, "source": "Leaflets/tiny", "focus": t, "qtype": "information"}
        for i, (t, x) in TINY_CORPUS.items()
    ]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Path(path)


def tiny_questions(templates=QUESTION_TEMPLATES) -> list[dict]:
    """One question per document and template, with its gold document: id, question, gold_doc_ids, source."""
    return [
        {"id": f"{i}:{k}", "question": tpl.format(t=t.lower()), "gold_doc_ids": [i], "source": "Leaflets/tiny"}
        for k, tpl in enumerate(templates)
        for i, (t, _) in TINY_CORPUS.items()
    ]


def training_text() -> str:
    prompt_text = USER_TEMPLATE.format(
        instructions=GROUNDED_INSTRUCTIONS.format(cannot_answer=CANNOT_ANSWER_PHRASE),
        sources="[1] Diabetes\nDiabetes is a condition.\n\n[2] Asthma\nAsthma is a lung condition.",
        question="What is diabetes?",
    )
    return MEDICAL_TEXT + "\n" + prompt_text + "\n[INST] [/INST] (no sources)\n"


def make_tiny_tokenizer(tmp_dir: str | Path, vocab_size: int = 600) -> Path:
    """Train a small BPE tokenizer and save it as a `PreTrainedTokenizerFast` folder; returns the folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out = Path(tmp_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,  # ids 0..3 in this order
        initial_alphabet=list(string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", "")),
        show_progress=False,
    )
    tok.train_from_iterator(training_text().splitlines(keepends=True), trainer=trainer)
    # like Mistral's tokenizer: encode() adds <s> unless add_special_tokens=False
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(out)
    return out


def make_tiny_mistral(dir: str | Path, tokenizer_dir: str | Path, seed: int = 0, train_steps: int = 30) -> Path:
    """A 2-layer Mistral saved with its tokenizer: a complete local base model folder.

    `train_steps` steps of next-token training on the tokenizer's text make greedy output varied
    (a purely random model tends to repeat one token); 0 keeps the random initialisation.
    """
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    out = Path(dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MistralConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = MistralForCausalLM(config)
    if train_steps:
        ids = tokenizer(MEDICAL_TEXT, return_tensors="pt").input_ids[:, :256]
        _train(model, ids, train_steps, lr=3e-3)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_tiny_adapter(
    base_dir: str | Path,
    out_dir: str | Path,
    steps: int = 1,
    seed: int = 0,
    r: int = 4,
    text: str = "Asthma is a common lung condition. An inhaler can relieve symptoms.",
    lr: float = 5e-2,
) -> Path:
    """Save a LoRA adapter (q_proj, v_proj) after `steps` optimiser steps on `text`; returns the folder.

    Different seeds or texts give adapters whose greedy outputs differ, which the swap tests rely on.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, config)
    with torch.no_grad():  # lora_B starts at zero; a random start makes the effect visible after one step
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    ids = tokenizer(text, return_tensors="pt").input_ids
    _train(model, ids, steps, lr=lr)
    model.save_pretrained(out)
    return out


def _train(model, ids: torch.Tensor, steps: int, lr: float) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def build_all(root: str | Path, adapters: int = 2) -> dict[str, Path]:
    """Tokenizer, base model and `adapters` adapters (seeds 0, 1, ...) under `root`: the usual test set-up."""
    root = Path(root)
    tok = make_tiny_tokenizer(root / "tokenizer")
    base = make_tiny_mistral(root / "base", tok)
    out = {"tokenizer": tok, "base": base}
    for i in range(adapters):
        out[f"adapter{i}"] = make_tiny_adapter(base, root / f"adapter{i}", seed=i, text=MEDICAL_TEXT.splitlines()[i])
    return out
