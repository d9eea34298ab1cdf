"""The ``export`` verb: a draft head written in a serving engine's layout (core/export.py)."""

from __future__ import annotations

import json

from ..export import export as write_head


def export(args) -> int:
    res = write_head(args.drafter, args.out, args.format, args.verifier, args.target, args.speculative_tokens, args.dtype)
    print(
        json.dumps(res)
        if args.json
        else f"wrote {res['out']} ({res['format']}; verifier {res['verifier']}, aux layers {res['aux_layer_ids']}, "
        f"draft vocab {res['draft_vocab_size']}, norm_before_residual {res['norm_before_residual']}, {res['dtype']})"
    )
    return 0
