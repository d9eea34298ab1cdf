"""Byte-level BPE tokenizer trained locally on text from the task generator.

Special tokens (all registered as *special* added tokens):
  <|pad|>  <|bos|>  <|eos|>  <|user|>  <|assistant|>  <image>

Note on user text and special tokens: like every HF fast tokenizer, the added special tokens are
matched in the raw text *before* BPE, so a user prompt containing the literal string "<image>"
or "<|eos|>" IS tokenized to the special token id (verified in tests/test_scenes.py). The
tokenizer cannot distinguish "typed" from "templated" special tokens, so the engine must
sanitise user text (e.g. strip/escape these literals) before applying the chat template.
Passing ``split_special_tokens=True`` to the tokenizer call would avoid it, but would also stop
the processor from expanding the real <image> placeholder, so it is not set here.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
USER, ASSISTANT, IMAGE = "<|user|>", "<|assistant|>", "<image>"
SPECIAL_TOKENS = [PAD, BOS, EOS, USER, ASSISTANT, IMAGE]

# HF multimodal message format: content is a string or a list of {"type": "image"} /
# {"type": "text", "text": ...} items. System messages are not part of the training format and
# are rendered like a user turn's text prefix-free (ignored).
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|user|>\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<image>\n' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|assistant|>\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|eos|>\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"
)


def build_tokenizer(texts, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=[USER, ASSISTANT, IMAGE],
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_default_tokenizer(n_samples: int = 30000, vocab_size: int = 2048):
    from tools.scenes.tasks import corpus

    return build_tokenizer(corpus(n_samples), vocab_size=vocab_size)
