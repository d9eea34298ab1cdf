"""The CUDA path, run where there is a CUDA GPU (skipped cleanly elsewhere): speculative output ==
AR output on the GPU for every shape incl. the adaptive default, the cost model measured there, and
sampling kept on the device. `bash scripts/cuda_check.sh` runs this file and a short bench."""

import pytest
import torch

from core import adapters
from core.costs import CostModel, target_curve
from core.drafters import DraftSpec, ModelDrafter, NgramDrafter, make_drafter, spec_for
from core.engine import generate
from core.policy import AutoPolicy
from core.sampling import SamplingConfig
from tools.tiny import tiny_image, tiny_model_dir

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
SPECS = [
    DraftSpec("chain", gamma=4),
    DraftSpec("tree", branching=(3, 2, 1)),
    DraftSpec("dynamic", depth=4, top_k=4, budget=12),
    spec_for("auto"),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", ["llama", "llava", "qwen2_vl"])
def test_speculative_equals_ar_on_cuda(family, dtype):
    tgt = adapters.load(tiny_model_dir(family), dtype=dtype, device="cuda")
    assert tgt.device.type == "cuda" and tgt.kernels["paths"] == "stock (not a CPU)"
    small = adapters.load(tiny_model_dir(family, num_layers=1, seed=1), dtype=dtype, device="cuda", role="drafter")
    img = tiny_image() if family != "llama" else None
    for prompt in ("hello world hello world hello", "Describe the picture."):
        ref = generate(tgt, prompt, img, max_new_tokens=16).output
        for d in (ModelDrafter(tgt, "self"), ModelDrafter(small, "small"), NgramDrafter(tgt), make_drafter("layerskip:1", tgt)):
            for spec in SPECS:
                tr = generate(tgt, prompt, img, d, spec, max_new_tokens=16)
                assert tr.output == ref, (family, dtype, d.name, spec)


def test_cost_model_and_auto_shapes_on_cuda():
    tgt = adapters.load(tiny_model_dir("llama"), device="cuda")
    curve = target_curve(tgt, refresh=True)
    assert all(v > 0 for v in curve.values())
    pol = AutoPolicy(CostModel(curve))
    tr = generate(tgt, "hello world hello world", None, ModelDrafter(tgt, "self"), spec_for("auto"), max_new_tokens=40, policy=pol)
    assert tr.output == generate(tgt, "hello world hello world", None, max_new_tokens=40).output
    # the target drafting for itself is always accepted: on a GPU, where a wide verify costs about
    # one token, the policy drafts (it never settles on plain steps)
    assert sum(len(s.tokens) for s in tr.steps[1:]) > 0, tr.meta["policy"]


def test_sampling_runs_on_cuda():
    tgt = adapters.load(tiny_model_dir("llama"), device="cuda")
    small = adapters.load(tiny_model_dir("llama", num_layers=1, seed=1), device="cuda", role="drafter")
    for spec in (DraftSpec("chain", gamma=3), spec_for("auto")):
        tr = generate(
            tgt, "hello world", None, ModelDrafter(small, "small"), spec, SamplingConfig(temperature=1.0, seed=3), max_new_tokens=12
        )
        assert len(tr.output) == 12
