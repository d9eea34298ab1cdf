"""What the trainers share: the sample encoding and batching, the auxiliary grid / count labels,
the learning-rate schedule, logging, saving and the argument checks.

Used by ``tools.train.target`` (the default target), ``tools.train.small`` (small drafters) and
``tools.train.grid_pretrain`` / ``tools.train.grow`` (target stages).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import torch

IMAGE_TOKENS = 64  # (128 / 16)^2 patches; CLS dropped by vision_feature_select_strategy="default"


def prompt_text(tokenizer, prompt: str, has_image: bool) -> str:
    content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": prompt}]
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)


def encode_sample(tokenizer, sample: dict):
    """(input_ids, labels) with the <image> placeholder expanded to IMAGE_TOKENS tokens;
    loss only on the answer tokens + eos."""
    text = prompt_text(tokenizer, sample["prompt"], sample["image"] is not None)
    text = text.replace("<image>", "<image>" * IMAGE_TOKENS)
    p_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(sample["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p_ids + a_ids, [-100] * len(p_ids) + a_ids


def focus_weights(tokenizer, sample: dict, n_answer: int, weight: float) -> list:
    """Per-token loss weights for the ``n_answer`` answer tokens (+ eos): ``weight`` on tokens that
    overlap a character span in ``sample["meta"]["focus"]`` (an answer's decisions, e.g. which
    object of a tally is counted), 1 elsewhere."""
    spans = sample.get("meta", {}).get("focus") or []
    w = [1.0] * n_answer
    if not spans or weight == 1.0:
        return w
    offs = tokenizer(sample["answer"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for k, (a, b) in enumerate(offs):
        if any(a < j and b > i for i, j in spans):
            w[k] = weight
    return w


def collate(tokenizer, image_processor, samples, max_len: int = 512, with_aux: bool = False, focus_weight: float = 1.0):
    enc = [encode_sample(tokenizer, s) for s in samples]
    L = min(max_len, max(len(i) for i, _ in enc))
    pad = tokenizer.pad_token_id
    ids = torch.full((len(enc), L), pad, dtype=torch.long)
    labels = torch.full((len(enc), L), -100, dtype=torch.long)
    att = torch.zeros((len(enc), L), dtype=torch.long)
    for b, (i, l) in enumerate(enc):
        i, l = i[:L], l[:L]
        ids[b, : len(i)] = torch.tensor(i)
        labels[b, : len(l)] = torch.tensor(l)
        att[b, : len(i)] = 1
    images = [s["image"] for s in samples if s["image"] is not None]
    batch = {"input_ids": ids, "attention_mask": att, "labels": labels}
    if focus_weight != 1.0:
        lw = torch.zeros((len(enc), L))
        for b, ((_, l), smp) in enumerate(zip(enc, samples)):
            n_ans = sum(1 for t in l if t != -100)
            w = [0.0] * (len(l) - n_ans) + focus_weights(tokenizer, smp, n_ans, focus_weight)
            lw[b, : min(L, len(w))] = torch.tensor(w[:L])
        batch["loss_weights"] = lw
    if images:
        batch["pixel_values"] = image_processor(images=images, return_tensors="pt")["pixel_values"]
        if with_aux:
            labs = [grid_labels(s["meta"]) for s in samples if s["image"] is not None]
            batch["aux_labels"] = {k: torch.tensor([l[k] for l in labs]) for k in labs[0]}
            batch["aux_labels"]["counts"] = torch.tensor([count_labels(s["meta"]) for s in samples if s["image"] is not None])
    return batch


# ---------------------------------------------------------------- auxiliary grid supervision
#
# Learning from the answer text alone, the vision tower learns colour/shape/position binding
# very slowly (stage 1 in assets/target/TRAINING.md). The generator knows what is in each of
# the 3x3 cells, so during training every image token (after the projector, i.e. exactly what the
# language model reads) also predicts the content of the cell its patch lies in: kind (empty /
# shape / word), colour, size and word. Small linear heads, discarded at save time: the shipped
# model is a plain LlavaForConditionalGeneration.


def _aux_vocab():
    from tools.scenes.generator import COLOR_NAMES, SHAPES, SIZES, WORDS

    return {"kind": ("empty", "word") + SHAPES, "color": ("none",) + COLOR_NAMES, "size": ("none",) + SIZES, "word": ("none",) + WORDS}


def patch_cells(image_size: int = 128, patch: int = 16, grid: int = 3) -> list:
    """(row, col) of the scene cell holding each patch centre, in the ViT's row-major order."""
    n = image_size // patch
    cell = image_size / grid
    return [
        (min(grid - 1, int((i * patch + patch / 2) // cell)), min(grid - 1, int((j * patch + patch / 2) // cell)))
        for i in range(n)
        for j in range(n)
    ]


def grid_labels(meta: dict) -> dict:
    """Per-patch class indices (lists of IMAGE_TOKENS ints) from a sample's scene metadata."""
    from tools.scenes.generator import LOCATIONS

    voc = _aux_vocab()
    where = {v: k for k, v in LOCATIONS.items()}
    cells = {}
    sc = meta["scene"]
    for o in sc["objects"]:
        cells[(o["row"], o["col"])] = (voc["kind"].index(o["shape"]), voc["color"].index(o["color"]), voc["size"].index(o["size"]), 0)
    if sc.get("word"):
        cells[where[sc["word_location"]]] = (voc["kind"].index("word"), 0, 0, voc["word"].index(sc["word"]))
    out = {k: [] for k in voc}
    for rc in patch_cells():
        k, c, s, w = cells.get(rc, (0, 0, 0, 0))
        out["kind"].append(k)
        out["color"].append(c)
        out["size"].append(s)
        out["word"].append(w)
    return out


class AuxGridHeads(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        # the projector's output has the scale of token embeddings, not of logits: normalise first
        self.norm = torch.nn.LayerNorm(hidden)
        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(hidden, len(v)) for k, v in _aux_vocab().items()})

    def loss(self, feats: torch.Tensor, labels: dict):
        """feats (n_images, IMAGE_TOKENS, hidden); labels name -> (n_images, IMAGE_TOKENS)."""
        total, accs = 0.0, {}
        for k, head in self.heads.items():
            logits = head(self.norm(feats.float()))
            total = total + torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[k].reshape(-1))
            accs[k] = (logits.argmax(-1) == labels[k]).float().mean().item()
        return total / len(self.heads), accs


# ---------------------------------------------------------------- auxiliary count supervision
#
# Counting a subset ("how many blue shapes?") stayed the weakest task (0.62) while counting all
# shapes is 0.98 right: the vision tower computes the total and spreads it over its tokens, so
# the language model only looks it up. The count heads ask the same of every subset: the MEAN of
# the image tokens (what one uniform attention head reads) must tell, linearly, how many objects
# of each colour, shape and size the scene holds (0..8 each). Discarded at save time, like the
# grid heads.


def count_labels(meta: dict) -> list:
    """Object counts per colour, per shape and per size (ints 0..8), in the generator's
    COLOR_NAMES, SHAPES, SIZES order."""
    from tools.scenes.generator import COLOR_NAMES, SHAPES, SIZES

    objs = meta["scene"]["objects"]
    return (
        [min(8, sum(o["color"] == c for o in objs)) for c in COLOR_NAMES]
        + [min(8, sum(o["shape"] == s for o in objs)) for s in SHAPES]
        + [min(8, sum(o["size"] == z for o in objs)) for z in SIZES]
    )


class AuxCountHeads(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        from tools.scenes.generator import COLOR_NAMES, SHAPES, SIZES

        self.n = len(COLOR_NAMES) + len(SHAPES) + len(SIZES)
        self.norm = torch.nn.LayerNorm(hidden)
        self.head = torch.nn.Linear(hidden, self.n * 9)

    def loss(self, feats: torch.Tensor, counts: torch.Tensor):
        """feats (n_images, IMAGE_TOKENS, hidden); counts (n_images, n) -> (loss, accuracy)."""
        logits = self.head(self.norm(feats.float()).mean(1)).view(-1, self.n, 9)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), counts.reshape(-1))
        return loss, (logits.argmax(-1) == counts).float().mean().item()


# ---------------------------------------------------------------- training helpers


def log(msg: str, run_dir: Path):
    line = f"{dt.datetime.now(dt.UTC).strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with open(run_dir / "log.txt", "a") as f:
        f.write(line + "\n")


def lr_at(step: int, frac: float, peak: float, warmup: int, floor: float = 0.05) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(max(frac, 0.0), 1.0)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def save_final(model, processor, out: Path, dtype=torch.bfloat16):
    import copy

    out.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).to(dtype)
    m.save_pretrained(out)
    processor.save_pretrained(out)


def require_model_dir(ap, path: str | None, flag: str, model_type: str | None = None) -> None:
    """A clear argparse error (exit 2, no traceback) when ``path`` is not a saved model directory,
    or (``model_type``) one of another architecture: transformers would otherwise build a default
    model of the asked class around mismatched weights with only a warning."""
    if path and not (Path(path) / "config.json").is_file():
        ap.error(f"{flag} {path!r} is not a saved model directory (no config.json there)")
    if path and model_type:
        import json

        try:
            found = json.loads((Path(path) / "config.json").read_text()).get("model_type")
        except (OSError, ValueError) as e:
            ap.error(f"{flag} {path!r}: unreadable config.json ({e})")
        if found != model_type:
            ap.error(f"{flag} {path!r} is a {found!r} model; this needs a {model_type!r} model")
