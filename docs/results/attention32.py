"""Thirty-second session: the attention's two batched products per row, as core/compiled.py computes them
(each row against its own copy of the keys, batches of G = 6 query heads), against one product of every
row's heads over the shared keys (batches of n x G). Bit for bit the same here (MKL, float32), and faster
at 4 and 8 rows (attention32.log; with the per-row keys made contiguous first, as the compiled graph's
gather makes them: 99 -> 72 us a layer at 4 rows, 176 -> 107 at 8): what a chain verify could save, since
its rows read the keys in column order and need no gather."""

import time

import torch

torch.set_num_threads(2)
KV, G, d, B, BL = 2, 6, 128, 5, 64  # the 1.5B target's heads, 320 keys in blocks of 64


def per_row(q, k, v, p, n):
    kr, vr = k[:, None].expand(KV, n, B, BL, d), v[:, None].expand(KV, n, B, BL, d)
    return torch.matmul(q[:, :, None], kr.transpose(-1, -2)), torch.matmul(p, vr)  # (KV, n, B, G, .)


def shared(q, k, v, p, n):
    s = torch.matmul(q.reshape(KV, 1, n * G, d), k.transpose(-1, -2)).view(KV, B, n, G, BL)
    o = torch.matmul(p.permute(0, 2, 1, 3, 4).reshape(KV, B, n * G, BL), v).view(KV, B, n, G, d)
    return s.permute(0, 2, 1, 3, 4), o.permute(0, 2, 1, 3, 4)


g = torch.Generator().manual_seed(0)
for n in (1, 2, 3, 4, 5, 6, 8, 16):
    q, k, v = torch.randn(KV, n, G, d, generator=g), torch.randn(KV, B, BL, d, generator=g), torch.randn(KV, B, BL, d, generator=g)
    p = torch.softmax(torch.randn(KV, n, B, G, BL, generator=g), -1)
    a, b = per_row(q, k, v, p, n), shared(q, k, v, p, n)
    one = per_row(q[:, :1], k, v, p[:, :1], 1)  # the first row alone, as a plain step computes it
    same = [torch.equal(x, y.contiguous()) for x, y in zip(a, b)] + [torch.equal(one[0], b[0][:, :1].contiguous())]
    print(f"{n} rows: scores, values, row 0 alone bit for bit the same: {same}")
for n in (1, 4, 8):
    q, k, v = torch.randn(KV, n, G, d), torch.randn(KV, B, BL, d), torch.randn(KV, B, BL, d)
    p = torch.softmax(torch.randn(KV, n, B, G, BL), -1)
    for f in (per_row, shared):
        for _ in range(50):
            f(q, k, v, p, n)
        t0 = time.perf_counter()
        for _ in range(500):
            f(q, k, v, p, n)
        print(f"{n} rows {f.__name__}: {(time.perf_counter() - t0) / 500 * 1e6:.1f} us a layer")
