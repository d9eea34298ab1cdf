"""Released MSD heads by Hub id (``msd:owner/name``): the app accepts the id form, refuses
paths outside the allowed roots, and an unreachable Hub gives a clear load error."""

from __future__ import annotations

import pytest

from core.errors import InputError, ModelLoadError
from core.drafters import make_drafter
from tools.tiny import tiny_model_dir


def test_msd_hub_id_offline_is_a_clear_load_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from core import adapters

    target = adapters.load(tiny_model_dir("llava"))
    with pytest.raises(ModelLoadError, match="cannot load MSD head 'nobody/no-such-msd-head'"):
        make_drafter("msd:nobody/no-such-msd-head", target)
    with pytest.raises(ModelLoadError, match="no such directory"):
        make_drafter("msd:./not/a/dir/at/all", target)


def test_app_accepts_msd_ids_and_keeps_path_rules(monkeypatch, tmp_path):
    from ui import limits, presets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPECSCOPE_MODEL_ROOTS", str(tmp_path))
    head = tmp_path / "head"
    head.mkdir()
    (head / "config.json").write_text("{}")
    assert limits.check_model_id(f"msd:{head}", "drafter") == f"msd:{head}"
    with pytest.raises(InputError, match="allowed folder"):
        limits.check_model_id("msd:/etc", "drafter")
    with pytest.raises(ModelLoadError, match="unreachable"):  # offline and not cached: clear refusal
        limits.check_model_id("msd:lucylyn/MSD-LLaVA1.6-7B", "drafter")
    p = presets.get("llava16-msd")
    assert p.drafter == "msd:lucylyn/MSD-LLaVA1.6-7B"
    msg = presets.check_loadable(p)
    assert msg and "Staying on the embedded default" in msg
    # the real target's shipped EAGLE-3 head: only the target is missing offline, never the head
    p = presets.get("qwen-coder-eagle3")
    assert p.drafter == f"eagle3:{presets.CODER_HEAD}" and p.target == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    msg = presets.check_loadable(p)
    assert msg and "Qwen/Qwen2.5-Coder-1.5B-Instruct" in msg and "eagle3_coder" not in msg
