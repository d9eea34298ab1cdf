"""Train the project's embedded default *target* VLM (LLaVA-shaped, from scratch) on procedural
scenes, within a wall-clock budget, checkpointed and resumable.

    python -m tools.train.target --out assets/target --minutes 85 [--deadline 09:33] [--resume]

Schedule: linear warm-up over the first steps, then cosine decay driven by the fraction of the
time budget used (so the schedule fits the budget whatever the step time). Data is generated on
the fly (seeds ``step * batch + i`` of the training split, so a resume continues the stream).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import time
from pathlib import Path

import torch

from tools.train.common import IMAGE_TOKENS, AuxCountHeads, AuxGridHeads, collate, encode_sample, log, lr_at, require_model_dir, save_final

RUN_DIR = Path("runs/target")


# ---------------------------------------------------------------- model / processor


def build_processor(tokenizer):
    from transformers import CLIPImageProcessor, LlavaProcessor

    from tools.train.tokenizer import CHAT_TEMPLATE

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 128},
        crop_size={"height": 128, "width": 128},
        do_resize=True,
        do_center_crop=True,
        do_rescale=True,
        do_normalize=True,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=16,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=CHAT_TEMPLATE,
    )


PRESETS = {
    # name: (text hidden, layers, heads, kv heads, intermediate, vision hidden, layers, heads, inter)
    "large": (512, 8, 8, 4, 1408, 256, 4, 4, 1024),
    "medium": (384, 6, 6, 2, 1024, 256, 4, 4, 1024),
    "small": (256, 6, 4, 2, 768, 192, 3, 3, 768),
}


def arch_summary(model) -> str:
    t, v = model.config.text_config, model.config.vision_config
    return (
        f"Llama text model {t.hidden_size} hidden x {t.num_hidden_layers} layers ({t.num_attention_heads} "
        f"heads, {t.num_key_value_heads} KV heads, MLP {t.intermediate_size}) + CLIP ViT {v.hidden_size} x "
        f"{v.num_hidden_layers} layers (MLP {v.intermediate_size})"
    )


def build_model(tokenizer, preset: str = "medium"):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    th, tl, tn, tk, ti, vh, vl, vn, vi = PRESETS[preset]

    vocab = len(tokenizer)
    vocab = ((vocab + 63) // 64) * 64
    text = LlamaConfig(
        vocab_size=vocab,
        hidden_size=th,
        intermediate_size=ti,
        num_hidden_layers=tl,
        num_attention_heads=tn,
        num_key_value_heads=tk,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = CLIPVisionConfig(
        image_size=128, patch_size=16, hidden_size=vh, num_hidden_layers=vl, num_attention_heads=vn, intermediate_size=vi, projection_dim=vh
    )
    cfg = LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=IMAGE_TOKENS,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlavaForConditionalGeneration(cfg)
    try:
        gc = model.generation_config
        gc.pad_token_id = tokenizer.pad_token_id
        gc.bos_token_id = tokenizer.bos_token_id
        gc.eos_token_id = tokenizer.eos_token_id
    except Exception:  # pragma: no cover
        pass
    return model


# ---------------------------------------------------------------- data


class ProjectorTap:
    """Forward hook that keeps the last output of the multimodal projector."""

    def __init__(self, model):
        self.out = None
        model.model.multi_modal_projector.register_forward_hook(self._hook)

    def _hook(self, module, inp, out):
        self.out = out


class BucketedStream:
    """Deterministic, resumable batch stream: groups of ``group`` steps draw ``group * batch``
    training seeds, sort them by encoded length and cut them into batches (less padding), the
    order of the batches inside a group shuffled by the group index."""

    def __init__(
        self,
        tokenizer,
        image_processor,
        batch: int,
        group: int = 4,
        with_aux: bool = False,
        seed_offset: int = 0,
        weights: dict | None = None,
        style: str = "direct",
        focus_weight: float = 1.0,
    ):
        self.tok, self.ip, self.batch, self.group = tokenizer, image_processor, batch, group
        self.with_aux, self.style, self.focus_weight = with_aux, style, focus_weight
        self.seed_offset, self.weights = seed_offset, weights
        self._cache = (None, None)

    def get(self, step: int):
        from tools.scenes.tasks import make_sample

        g = step // self.group
        if self._cache[0] != g:
            n = self.batch * self.group
            samples = [make_sample(self.seed_offset + g * n + i, weights=self.weights, style=self.style) for i in range(n)]
            lens = [len(encode_sample(self.tok, s)[0]) for s in samples]
            order = sorted(range(n), key=lambda i: (lens[i], i))
            chunks = [[samples[j] for j in order[k * self.batch : (k + 1) * self.batch]] for k in range(self.group)]
            random.Random(g).shuffle(chunks)
            self._cache = (g, chunks)
        return collate(self.tok, self.ip, self._cache[1][step % self.group], with_aux=self.with_aux, focus_weight=self.focus_weight)


def weighted_lm_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, each target token weighted (``weights`` aligned with ``labels``),
    normalised by the total weight: equal to the model's own mean loss when all weights are 1."""
    lg, lb, w = logits[:, :-1].float(), labels[:, 1:], weights[:, 1:]
    ce = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=-100, reduction="none")
    w = w.reshape(-1) * (lb.reshape(-1) != -100)
    return (ce * w).sum() / w.sum().clamp_min(1e-6)


# ---------------------------------------------------------------- training


def save_ckpt(path: Path, model, opt, step, elapsed, total, aux=None, counts=None):
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
            "aux": aux.state_dict() if aux is not None else None,
            "counts": counts.state_dict() if counts is not None else None,
            "elapsed": elapsed,
            "total": total,
            "torch_rng": torch.get_rng_state(),
            "py_rng": random.getstate(),
        },
        tmp,
    )
    os.replace(tmp, path)


def parse_task_weights(s: str) -> dict:
    """'count=0.2,attribute=0.3' -> {'count': 0.2, 'attribute': 0.3} (argparse type)."""
    from tools.scenes.tasks import ALL_TASKS

    out = {}
    for part in s.split(","):
        name, _, val = part.partition("=")
        name = name.strip()
        if name not in ALL_TASKS:
            raise argparse.ArgumentTypeError(f"unknown task {name!r}; tasks: {', '.join(ALL_TASKS)}")
        try:
            w = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected task=weight") from None
        if not w >= 0:
            raise argparse.ArgumentTypeError(f"{part!r}: a weight must be >= 0")
        out[name] = w
    if not any(out.values()):
        raise argparse.ArgumentTypeError("at least one task needs a positive weight")
    return out


def parse_deadline(s: str | None):
    if not s:
        return None
    now = dt.datetime.now(dt.UTC)
    h, m = (int(x) for x in s.split(":"))
    d = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if d < now - dt.timedelta(hours=1):
        d += dt.timedelta(days=1)
    return d.timestamp()


def parser() -> argparse.ArgumentParser:
    from tools.scenes.tasks import ANSWER_STYLES

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="assets/target")
    ap.add_argument("--run-dir", default=str(RUN_DIR))
    ap.add_argument("--minutes", type=float, default=70.0, help="training time budget")
    ap.add_argument("--deadline", default=None, help="HH:MM UTC: stop (and save) before this")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (smoke test)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--new-schedule",
        action="store_true",
        help="with --resume: start a fresh warm-up + cosine over --minutes (continue "
        "training a finished run instead of resuming its old schedule)",
    )
    ap.add_argument(
        "--init",
        default=None,
        help="continue from a saved model directory (e.g. the shipped assets/target): its "
        "weights and processor, a fresh optimizer and schedule (runs/ is not kept)",
    )
    ap.add_argument(
        "--preset",
        default="small",
        choices=sorted(PRESETS),
        help="architecture of a new model (with --init, the init model's architecture is kept)",
    )
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (only a win on CPUs with AVX512-BF16/AMX; this one has not)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--aux-weight", type=float, default=0.5, help="weight of the auxiliary per-patch grid loss (0 = answer text only)")
    ap.add_argument(
        "--count-weight",
        type=float,
        default=0.0,
        help="weight of the auxiliary count loss (mean image token -> objects per colour / "
        "shape / size); needs --aux-weight > 0; 0 = off (stages 1-6)",
    )
    ap.add_argument("--save-reserve", type=float, default=60.0, help="seconds kept for saving")
    ap.add_argument(
        "--seed-offset", type=int, default=0, help="first training seed (a later stage can see fresh scenes instead of the same ones)"
    )
    ap.add_argument(
        "--answer-style",
        default="direct",
        choices=ANSWER_STYLES,
        help="'tally': filtered counts and spatial questions are answered after listing "
        "every object (the shipped target's style since stage 12; tools.scenes.tasks.make_sample)",
    )
    ap.add_argument(
        "--focus-weight",
        type=float,
        default=1.0,
        help="loss weight of an answer's decision tokens (tally style: which objects are "
        "counted, the located reference and the final sentence); 1 = plain loss",
    )
    ap.add_argument(
        "--task-weights",
        default=None,
        type=parse_task_weights,
        help="task mixture, e.g. 'count=0.2,attribute=0.3,...' (unnamed tasks get 0; default: the generator's mixture)",
    )
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked (argparse errors: exit 2, no traceback)."""
    ap = parser()
    args = ap.parse_args(argv)
    from tools.scenes.generator import HELDOUT_START

    if args.seed_offset < 0 or args.seed_offset >= HELDOUT_START // 2:
        ap.error(f"--seed-offset must be in [0, {HELDOUT_START // 2}): training seeds stay below the held-out split")
    if not args.focus_weight > 0:
        ap.error(f"--focus-weight must be > 0 (1 = plain loss), got {args.focus_weight}")
    if args.count_weight > 0 and not args.aux_weight > 0:
        ap.error("--count-weight needs --aux-weight > 0 (the same projector tap)")
    require_model_dir(ap, args.init, "--init", model_type="llava")
    return args


def load_processor(args, proc_dir: Path, resuming: bool):
    """The processor (tokenizer + image processor) of the run: the checkpoint's on a resume, the
    init model's with --init, else a new tokenizer trained on the scenes (saved in ``proc_dir``)."""
    from transformers import AutoProcessor

    if resuming:
        return AutoProcessor.from_pretrained(proc_dir)
    if args.init:
        processor = AutoProcessor.from_pretrained(args.init)
        processor.save_pretrained(proc_dir)
        return processor
    from tools.train.tokenizer import build_default_tokenizer

    build_processor(build_default_tokenizer()).save_pretrained(proc_dir)
    return AutoProcessor.from_pretrained(proc_dir)  # exactly what will be shipped


def build_modules(args, tokenizer, run_dir: Path, resuming: bool):
    """(model, grid heads or None, projector tap or None, count heads or None)."""
    torch.manual_seed(1234)
    random.seed(1234)
    if args.init:  # the architecture comes from --init (e.g. a target grown by tools.train.grow)
        from transformers import LlavaForConditionalGeneration

        model = LlavaForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
        if not resuming:
            log(f"initialised from {args.init}", run_dir)
    else:
        model = build_model(tokenizer, args.preset)
    hidden = model.config.text_config.hidden_size
    aux = AuxGridHeads(hidden) if args.aux_weight > 0 else None
    tap = ProjectorTap(model) if aux is not None else None
    if aux is not None and args.init and (Path(args.init) / "grid_heads.pt").exists():
        aux.load_state_dict(torch.load(Path(args.init) / "grid_heads.pt", map_location="cpu"))
        log(f"grid heads from {args.init} (tools.train.grid_pretrain)", run_dir)
    counts = None
    if args.count_weight > 0:
        counts = AuxCountHeads(hidden)
        if args.init and (Path(args.init) / "count_heads.pt").exists():
            counts.load_state_dict(torch.load(Path(args.init) / "count_heads.pt", map_location="cpu"))
    return model, aux, tap, counts


def make_optimizer(args, *modules) -> torch.optim.Optimizer:
    """AdamW over every parameter of ``modules`` (None skipped), no weight decay on vectors."""
    decay, no_decay = [], []
    for m in modules:
        for _, p in m.named_parameters() if m is not None else ():
            (no_decay if p.ndim < 2 else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8
    )


def resume(args, ckpt_path: Path, run_dir: Path, model, opt, aux, counts):
    """Load the checkpoint into the modules; (step, elapsed, total, step the schedule starts at)."""
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    if aux is not None and ck.get("aux"):
        aux.load_state_dict(ck["aux"])
    if counts is not None and ck.get("counts"):
        counts.load_state_dict(ck["counts"])
    opt.load_state_dict(ck["opt"])
    step, elapsed, total = ck["step"], ck["elapsed"], ck["total"]
    torch.set_rng_state(ck["torch_rng"])
    random.setstate(ck["py_rng"])
    log(f"resumed at step {step}, elapsed {elapsed:.0f}s of {total:.0f}s", run_dir)
    if args.new_schedule:
        log(f"new schedule: {args.minutes * 60.0:.0f}s from step {step}", run_dir)
        return step, 0.0, args.minutes * 60.0, step
    return step, elapsed, total, 0


def plan_end(args, t_start: float, elapsed: float, total: float):
    """(wall-clock end of this process, schedule length): whichever comes first, the budget or the
    deadline (minus the save reserve); the schedule shrinks so that it completes by the deadline."""
    end_wall = t_start + (total - elapsed) + 5
    deadline = parse_deadline(args.deadline)
    if deadline is not None:
        end_wall = min(end_wall, deadline - args.save_reserve)
        total = min(total, elapsed + (end_wall - time.time()))
    return end_wall, total


class ThreadTuner:
    """The 2 cores are shared with other jobs: with one core busy elsewhere, 2 OpenMP threads can
    run slower than 1 (barrier spinning). So the thread count is adaptive: every ``probe_every``
    steps, a few steps run with the other setting and the faster (seconds per token, EMA) wins."""

    def __init__(self, threads: int, probe_every: int = 60, probe_len: int = 4):
        self.options = sorted({1, threads})
        self.sec_per_tok = {n: None for n in self.options}
        self.current = 1 if len(self.options) > 1 else threads
        self.probe_every, self.probe_len, self.probe_left = probe_every, probe_len, 0
        torch.set_num_threads(self.current)

    def observe(self, step: int, seconds: float, tokens: int) -> None:
        """After ``step`` (1-based) took ``seconds`` of compute for ``tokens`` tokens."""
        if step > 2:  # skip warm-up steps
            spt = seconds / tokens
            old = self.sec_per_tok[self.current]
            self.sec_per_tok[self.current] = spt if old is None else 0.7 * old + 0.3 * spt
        if len(self.options) < 2:
            return
        if self.probe_left > 0:
            self.probe_left -= 1
            if self.probe_left == 0:
                self.current = min(self.options, key=lambda n: self.sec_per_tok[n] or 1e9)
                torch.set_num_threads(self.current)
        elif step % self.probe_every == 0 or step == 10:
            self.current = [n for n in self.options if n != self.current][0]
            torch.set_num_threads(self.current)
            self.probe_left = self.probe_len


def train_step(args, model, opt, aux, tap, counts, batch: dict):
    """One optimizer step on ``batch``: (language-model loss, grad norm, aux accuracies or None)."""
    aux_labels = batch.pop("aux_labels", None)
    loss_weights = batch.pop("loss_weights", None)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        outp = model(**batch)
    loss = lm_loss = outp.loss if loss_weights is None else weighted_lm_loss(outp.logits, batch["labels"], loss_weights)
    aux_acc = None
    if aux is not None and aux_labels is not None and tap.out is not None:
        feats = tap.out.reshape(len(aux_labels["kind"]), IMAGE_TOKENS, -1)
        aux_loss, aux_acc = aux.loss(feats, aux_labels)
        loss = lm_loss + args.aux_weight * aux_loss
        if counts is not None:
            c_loss, aux_acc["counts"] = counts.loss(feats, aux_labels["counts"])
            loss = loss + args.count_weight * c_loss
    if tap is not None:
        tap.out = None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return lm_loss, gn, aux_acc


def write_card(out: Path, argv, model, tokenizer, args, n_params: float, step: int, elapsed: float, final_loss: float) -> None:
    (out / "TRAINING.md").write_text(
        "# Default target VLM (SpecScope)\n\n"
        "Trained from scratch on procedural scenes (tools/scenes) on 2 CPU cores.\n\n"
        f"- command: `python -m tools.train.target {' '.join(argv) if argv else ' '.join(os.sys.argv[1:])}`\n"
        f"- architecture: LlavaForConditionalGeneration, {arch_summary(model)}, "
        f"CLIP ViT 128px / patch 16 (64 image tokens); {n_params / 1e6:.1f}M params; "
        f"vocab {len(tokenizer)} (byte-level BPE)\n"
        f"- steps: {step} x batch {args.batch}; peak lr {args.lr}, warm-up {args.warmup}, cosine by time\n"
        f"- training wall time: {elapsed / 60:.1f} min\n"
        f"- final loss (last step): {final_loss:.4f}\n"
        f"- saved in bfloat16; finished {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}\n"
    )


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    ckpt_path = run_dir / "ckpt.pt"
    t_start = time.time()
    resuming = args.resume and ckpt_path.exists()

    processor = load_processor(args, run_dir / "processor", resuming)
    tokenizer, image_processor = processor.tokenizer, processor.image_processor
    model, aux, tap, counts = build_modules(args, tokenizer, run_dir, resuming)
    n_params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(args, model, aux, counts)
    step, elapsed, total, sched_step0 = 0, 0.0, args.minutes * 60.0, 0
    if resuming:
        step, elapsed, total, sched_step0 = resume(args, ckpt_path, run_dir, model, opt, aux, counts)
    end_wall, total = plan_end(args, t_start, elapsed, total)
    log(
        f"start: params {n_params / 1e6:.1f}M vocab {len(tokenizer)} batch {args.batch} "
        f"lr {args.lr} schedule {total:.0f}s end {dt.datetime.fromtimestamp(end_wall, dt.UTC):%H:%M:%S} "
        f"setup {time.time() - t_start:.1f}s seeds from {args.seed_offset} "
        f"tasks {args.task_weights or 'default mixture'} answers {args.answer_style} "
        f"focus weight {args.focus_weight}",
        run_dir,
    )

    stream = BucketedStream(
        tokenizer,
        image_processor,
        args.batch,
        with_aux=aux is not None,
        seed_offset=args.seed_offset,
        weights=args.task_weights,
        style=args.answer_style,
        focus_weight=args.focus_weight,
    )
    threads = ThreadTuner(args.threads)
    model.train()
    last_ckpt = time.time()
    loss_acc, n_acc, t_acc, data_acc = 0.0, 0, 0.0, 0.0
    aux_acc_acc, aux_n = {}, 0
    seg_start = time.time()
    elapsed0 = elapsed
    lm_loss = None
    while True:
        now = time.time()
        elapsed = elapsed0 + (now - seg_start)
        if now >= end_wall or elapsed >= total or (args.steps and step >= args.steps):
            break
        t0 = time.time()
        batch = stream.get(step)
        t1 = time.time()
        lr = lr_at(step - sched_step0, elapsed / total, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        lm_loss, gn, aux_acc = train_step(args, model, opt, aux, tap, counts, batch)
        if aux_acc is not None:
            aux_acc_acc = {k: aux_acc_acc.get(k, 0.0) + v for k, v in aux_acc.items()}
            aux_n += 1
        step += 1
        t2 = time.time()
        threads.observe(step, t2 - t1, batch["input_ids"].numel())
        loss_acc += lm_loss.item()
        n_acc += 1
        t_acc += t2 - t0
        data_acc += t1 - t0
        if step % 10 == 0 or step <= 5 or args.steps:
            log(
                f"step {step} loss {loss_acc / n_acc:.4f} lr {lr:.2e} gnorm {float(gn):.2f} "
                f"step_time {t_acc / n_acc:.2f}s data {data_acc / n_acc:.3f}s "
                f"seq {batch['input_ids'].shape[1]} threads {threads.current} elapsed {elapsed:.0f}s"
                + (" aux_acc " + " ".join(f"{k} {v / aux_n:.3f}" for k, v in aux_acc_acc.items()) if aux_n else ""),
                run_dir,
            )
            loss_acc, n_acc, t_acc, data_acc = 0.0, 0, 0.0, 0.0
            aux_acc_acc, aux_n = {}, 0
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save_ckpt(ckpt_path, model, opt, step, elapsed0 + (time.time() - seg_start), total, aux, counts)
            try:
                save_final(model, processor, run_dir / "latest")
            except Exception as e:  # never kill the run for a snapshot
                log(f"snapshot failed: {e}", run_dir)
            last_ckpt = time.time()
            log(f"checkpoint at step {step}", run_dir)

    elapsed = elapsed0 + (time.time() - seg_start)
    save_ckpt(ckpt_path, model, opt, step, elapsed, total, aux, counts)
    save_final(model, processor, out)
    if aux is not None:  # lets a later `--init out` continue with the same grid heads
        torch.save(aux.state_dict(), out / "grid_heads.pt")
    if counts is not None:
        torch.save(counts.state_dict(), out / "count_heads.pt")
    final_loss = lm_loss.item() if step and lm_loss is not None else float("nan")
    write_card(out, argv, model, tokenizer, args, n_params, step, elapsed, final_loss)
    log(f"done: step {step} elapsed {elapsed:.0f}s final loss {final_loss:.4f} saved to {out}", run_dir)


if __name__ == "__main__":
    main()
