/* y[i, o] = dot(x[i, :], w[o, :]) (+ b[o]): a matrix product for a few rows whose every output is
 * computed in one fixed order, whatever the number of rows and whichever block computes it.
 *
 * Every dot product: one 8-lane float32 accumulator over chunks of the weight row (k ascending),
 * its lanes summed pairwise in a fixed tree, then the tail (k past the last chunk) in order, then
 * the bias. Rows are taken two at a time against four weight rows (b24: the weights read once for
 * both rows), a last odd row alone (b14), outputs past the last four alone (b11): the three kernels
 * do the same arithmetic per dot product, so row i of an n-row product equals the one-row product
 * of row i, bit for bit. The weights are float32 (rowdot_f32: chunks of 8) or bfloat16 (rowdot_bf16:
 * half the bytes read; chunks of 16, widened exactly to float32 as two vectors, the even k then the
 * odd k, and x laid out alike by the caller). Built and loaded by core/rowdot.py (no floating-point
 * reassociation is allowed: no -ffast-math). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

#define INLINE static inline __attribute__((always_inline))

INLINE v8 ld(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Weights: float32 (half = 0) or bfloat16 (half = 1: the upper 16 bits of a float32). A chunk is 8
 * float32 weights (one vector) or 16 bfloat16 weights (two: the even k and the odd k, taken from one
 * 32-byte load by a shift and a mask); the caller lays x out alike (bfloat16: each chunk of 16 as
 * its 8 even then its 8 odd elements; the tail past the last chunk in order). */
#define CHUNK(half) ((half) ? 16L : 8L)

INLINE void ldc(const void *w, long k, int half, v8 *v0, v8 *v1) {
    if (!half) {
        *v0 = ld((const float *)w + k);
        return;
    }
    v8u u;
    memcpy(&u, (const uint16_t *)w + k, sizeof u);
    v8u e = u << 16, o = u & 0xFFFF0000u;
    memcpy(v0, &e, sizeof e);
    memcpy(v1, &o, sizeof o);
}

/* a + x.w over one chunk (the even k, then the odd k). */
INLINE v8 mac(v8 a, const float *x, long k, v8 w0, v8 w1, int half) {
    a += ld(x + k) * w0;
    if (half) a += ld(x + k + 8) * w1;
    return a;
}

INLINE float w1(const void *w, long k, int half) {
    if (!half) return ((const float *)w)[k];
    uint32_t u = (uint32_t)((const uint16_t *)w)[k] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

INLINE const void *row(const void *w, long r, long K, int half) {
    return (const char *)w + r * K * (half ? 2 : 4);
}

INLINE float fin(v8 s, const float *x, const void *w, long k, long K, int half) {
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    float t = 0.0f;
    for (; k < K; k++) t += x[k] * w1(w, k, half);
    return r + t;
}

INLINE void b24(const float *x0, const float *x1, const void *w, long K, float *r0, float *r1, int half) {
    const void *w0 = w, *w1_ = row(w, 1, K, half), *w2 = row(w, 2, K, half), *w3 = row(w, 3, K, half);
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
    long KC = K - K % CHUNK(half);
    for (long k = 0; k < KC; k += CHUNK(half)) {
        v8 p = {0}, pp = {0}, q = {0}, qq = {0}, u = {0}, uu = {0}, v = {0}, vv = {0};
        ldc(w0, k, half, &p, &pp); ldc(w1_, k, half, &q, &qq);
        ldc(w2, k, half, &u, &uu); ldc(w3, k, half, &v, &vv);
        a0 = mac(a0, x0, k, p, pp, half); a1 = mac(a1, x0, k, q, qq, half);
        a2 = mac(a2, x0, k, u, uu, half); a3 = mac(a3, x0, k, v, vv, half);
        c0 = mac(c0, x1, k, p, pp, half); c1 = mac(c1, x1, k, q, qq, half);
        c2 = mac(c2, x1, k, u, uu, half); c3 = mac(c3, x1, k, v, vv, half);
    }
    r0[0] = fin(a0, x0, w0, KC, K, half); r0[1] = fin(a1, x0, w1_, KC, K, half);
    r0[2] = fin(a2, x0, w2, KC, K, half); r0[3] = fin(a3, x0, w3, KC, K, half);
    r1[0] = fin(c0, x1, w0, KC, K, half); r1[1] = fin(c1, x1, w1_, KC, K, half);
    r1[2] = fin(c2, x1, w2, KC, K, half); r1[3] = fin(c3, x1, w3, KC, K, half);
}

INLINE void b14(const float *x0, const void *w, long K, float *r0, int half) {
    const void *w0 = w, *w1_ = row(w, 1, K, half), *w2 = row(w, 2, K, half), *w3 = row(w, 3, K, half);
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    long KC = K - K % CHUNK(half);
    for (long k = 0; k < KC; k += CHUNK(half)) {
        v8 p = {0}, pp = {0}, q = {0}, qq = {0}, u = {0}, uu = {0}, v = {0}, vv = {0};
        ldc(w0, k, half, &p, &pp); ldc(w1_, k, half, &q, &qq);
        ldc(w2, k, half, &u, &uu); ldc(w3, k, half, &v, &vv);
        a0 = mac(a0, x0, k, p, pp, half); a1 = mac(a1, x0, k, q, qq, half);
        a2 = mac(a2, x0, k, u, uu, half); a3 = mac(a3, x0, k, v, vv, half);
    }
    r0[0] = fin(a0, x0, w0, KC, K, half); r0[1] = fin(a1, x0, w1_, KC, K, half);
    r0[2] = fin(a2, x0, w2, KC, K, half); r0[3] = fin(a3, x0, w3, KC, K, half);
}

INLINE float b11(const float *x0, const void *w0, long K, int half) {
    v8 a = {0};
    long KC = K - K % CHUNK(half);
    for (long k = 0; k < KC; k += CHUNK(half)) {
        v8 p = {0}, pp = {0};
        ldc(w0, k, half, &p, &pp);
        a = mac(a, x0, k, p, pp, half);
    }
    return fin(a, x0, w0, KC, K, half);
}

/* Outputs o..o+3 of every row. */
INLINE void quad(const float *x, const void *w, const float *b, float *y, long n, long K, long O, long o, int half) {
    const void *wq = row(w, o, K, half);
    float r0[4], r1[4];
    long i = 0;
    for (; i + 2 <= n; i += 2) {
        b24(x + i * K, x + (i + 1) * K, wq, K, r0, r1, half);
        for (int t = 0; t < 4; t++) {
            y[i * O + o + t] = b ? r0[t] + b[o + t] : r0[t];
            y[(i + 1) * O + o + t] = b ? r1[t] + b[o + t] : r1[t];
        }
    }
    if (i < n) {
        b14(x + i * K, wq, K, r0, half);
        for (int t = 0; t < 4; t++) y[i * O + o + t] = b ? r0[t] + b[o + t] : r0[t];
    }
}

/* Outputs past the last four, one at a time. */
INLINE void rest(const float *x, const void *w, const float *b, float *y, long n, long K, long O, int half) {
    for (long o = O & ~3L; o < O; o++)
        for (long i = 0; i < n; i++) {
            float r = b11(x + i * K, row(w, o, K, half), K, half);
            y[i * O + o] = b ? r + b[o] : r;
        }
}

/* x (n, K) float32, w (O, K), b (O) float32 or NULL, y (n, O) float32; all contiguous. Each entry
 * point has its own parallel loop, so the weight type is a constant inside it. */
void rowdot_f32(const float *x, const float *w, const float *b, float *y, long n, long K, long O, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long j = 0; j < O / 4; j++) quad(x, w, b, y, n, K, O, 4 * j, 0);
    rest(x, w, b, y, n, K, O, 0);
}

void rowdot_bf16(const float *x, const uint16_t *w, const float *b, float *y, long n, long K, long O, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long j = 0; j < O / 4; j++) quad(x, w, b, y, n, K, O, 4 * j, 1);
    rest(x, w, b, y, n, K, O, 1);
}

/* rowdot_dpbf16: bfloat16 weights and bfloat16 rows on CPUs with AVX512-BF16 (built only where the
 * compiler targets it: -march=native). VDPBF16PS takes 32 bfloat16 pairs a chunk straight from
 * memory: no widening, 64 bytes of weights per instruction. Every dot product: one 16-lane
 * accumulator over the chunks (k ascending; lane j takes k = 2j, 2j + 1 of each chunk, as the
 * instruction defines), its lanes summed in a fixed tree, then the tail (k past the last chunk) in
 * order in float32, then the bias. Blocks of up to four rows against four weight rows do the same
 * arithmetic per dot product, so row i of an n-row product is the one-row product of row i. x is
 * bfloat16 as the model holds it (n, K), in its own order. */
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>

/* Weights are fetched into L2 this many elements ahead of the loads: on the 2-core AVX512-BF16 EPYC a
 * one-row product of the lm_head read 27-29 GB/s without, 31-32 with (docs/results.md); the kernel
 * competes with the library's products in core.kernels either way. */
#ifndef RD_PF
#define RD_PF 2048
#endif
#ifndef RD_HINT
#define RD_HINT _MM_HINT_T1
#endif

int rowdot_dpbf16_built(void) { return 1; }

INLINE float hsum16(__m512 v) {
    float s[16];
    _mm512_storeu_ps(s, v);
    float a[8], c[4];
    for (int i = 0; i < 8; i++) a[i] = s[i] + s[i + 8];
    for (int i = 0; i < 4; i++) c[i] = a[i] + a[i + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* hsum16 of four sums at once, the same additions in the same order: s[i] + s[i + 8], then a[i] + a[i + 4],
 * then (c0 + c2) + (c1 + c3); lane k of the result is hsum16(vk), bit for bit. */
INLINE __m128 hsum4(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
    __m512 a01 = _mm512_add_ps(_mm512_shuffle_f32x4(v0, v1, 0x44), _mm512_shuffle_f32x4(v0, v1, 0xEE));
    __m512 a23 = _mm512_add_ps(_mm512_shuffle_f32x4(v2, v3, 0x44), _mm512_shuffle_f32x4(v2, v3, 0xEE));
    __m512 c = _mm512_add_ps(_mm512_shuffle_f32x4(a01, a23, 0x88), _mm512_shuffle_f32x4(a01, a23, 0xDD));
    __m512 d = _mm512_add_ps(c, _mm512_permute_ps(c, 0x4E)); /* c0 + c2, c1 + c3 in each lane of four */
    __m512 e = _mm512_add_ps(d, _mm512_permute_ps(d, 0xB1)); /* (c0 + c2) + (c1 + c3) */
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), e));
}

INLINE float bf(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* R rows of x (1..4) against weight rows o..o+3: y[r * O + o + c]. */
INLINE void dblk(const uint16_t *x, int R, const uint16_t *w, const float *b, float *y, long K, long O, long o) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    const uint16_t *wr = w + o * K;
    long KC = K - K % 32;
    for (long k = 0; k < KC; k += 32) {
        __m512bh wv[4];
#if RD_PF
        for (int c = 0; c < 4; c++) _mm_prefetch((const char *)(wr + c * K + k + RD_PF), RD_HINT);
#endif
        for (int c = 0; c < 4; c++) wv[c] = (__m512bh)_mm512_loadu_si512((const void *)(wr + c * K + k));
        for (int r = 0; r < R; r++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(x + r * K + k));
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) {
            float s = hsum16(acc[r][c]), t = 0.0f;
            for (long k = KC; k < K; k++) t += bf(x[r * K + k]) * bf(wr[c * K + k]);
            s += t;
            y[r * O + o + c] = b ? s + b[o + c] : s;
        }
}

/* One weight row o alone (outputs past the last four): the same arithmetic as dblk. */
INLINE float d11(const uint16_t *x, const uint16_t *wr, long K) {
    __m512 a = _mm512_setzero_ps();
    long KC = K - K % 32;
    for (long k = 0; k < KC; k += 32)
        a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512((const void *)(x + k)), (__m512bh)_mm512_loadu_si512((const void *)(wr + k)));
    float s = hsum16(a), t = 0.0f;
    for (long k = KC; k < K; k++) t += bf(x[k]) * bf(wr[k]);
    return s + t;
}

void rowdot_dpbf16(const uint16_t *x, const uint16_t *w, const float *b, float *y, long n, long K, long O, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long j = 0; j < O / 4; j++) {
        long i = 0;
        for (; i + 4 <= n; i += 4) dblk(x + i * K, 4, w, b, y + i * O, K, O, 4 * j);
        switch (n - i) {
        case 3: dblk(x + i * K, 3, w, b, y + i * O, K, O, 4 * j); break;
        case 2: dblk(x + i * K, 2, w, b, y + i * O, K, O, 4 * j); break;
        case 1: dblk(x + i * K, 1, w, b, y + i * O, K, O, 4 * j); break;
        }
    }
    for (long o = O & ~3L; o < O; o++)
        for (long i = 0; i < n; i++) {
            float s = d11(x + i * K, w + o * K, K);
            y[i * O + o] = b ? s + b[o] : s;
        }
}

/* rowdot_il: rowdot_dpbf16 on a copy of the weights laid out in the order the kernel reads them
 * (rowdot_il_pack). A block of `il` weight rows is read as one sequential stream: per chunk of 32 k,
 * the block's rows' 64 bytes side by side (then each row's tail past the last chunk, in order), so the
 * hardware's stream prefetcher sees one stream, not `il` streams of a few kilobytes each. Measured on
 * the 2-core AVX512-BF16 EPYC over the 1.5B target's 197 matrices (3.09 GB, one row, interleaved with
 * a torch sum of 512 MiB): 0.90-1.04 of the sum's rate, against 0.59-0.90 for rowdot_dpbf16 and
 * 0.54-0.80 for oneDNN's packed product (docs/results.md). Every dot product does what dblk does (the
 * same 16-lane accumulator over the chunks, the same tree, the tail in order, then the bias), so the
 * results are rowdot_dpbf16's, bit for bit, whatever the layout and however rows are blocked.
 *
 * Two layouts, `il` = 8 or 4 weight rows a block, and two ways to take two or three rows (as a block
 * of four, zeros added, or as they are): only the speed differs, and which is faster depends on the
 * CPU, so rowdot.layout() measures them. A block of R rows against `il` weight rows keeps R x il
 * sums in vector registers beside the block's il weights and a row of x: at R = 4, il = 8 that is 41
 * of the 32 registers, and the sums spill. On the Zen 5 EPYC (thirtieth session,
 * docs/results/thirtieth_products.log) four rows cost 1.55x one row with il = 8 and 1.23x with il = 4,
 * one row the same. Rows past the last block of il keep their own layout. */
#ifndef RD_IL_PF
#define RD_IL_PF 8192 /* bytes ahead on the block's stream, into L2 */
#endif

void rowdot_il_pack(const uint16_t *w, uint16_t *out, long K, long O, int il) {
    long KC = K - K % 32, T = K - KC;
    for (long b = 0; b < O / il; b++) {
        uint16_t *blk = out + b * il * K;
        for (long k = 0; k < KC; k += 32)
            for (int c = 0; c < il; c++) memcpy(blk + (k / 32 * il + c) * 32, w + (b * il + c) * K + k, 64);
        for (int c = 0; c < il; c++) memcpy(blk + il * KC + c * T, w + (b * il + c) * K + KC, T * 2);
    }
    memcpy(out + O / il * il * K, w + O / il * il * K, (O % il) * K * 2);
}

/* R rows of x (1..4) against the block of IL weight rows at blk (outputs o..o+IL-1): yo[r * ys + c]
 * (yo: row 0's output o; ys: the stride between rows), plus bo[c] (bo: the bias from o, or NULL).
 *
 * ilrun: up to six rows as one block where the layout has 4 weight rows a block (24 sums, 4 weights
 * and a row of x: 29 of the 32 registers; on the Zen 5 EPYC five rows took 49.5 ms a step so against
 * 56.0 as four and one, six 54.3 against 57.7, eight as four and four 64.4 against 67.7 as six and
 * two: thirty-first session), up to four with 8 a block; more rows four at a time, then the rest as
 * one block; or (pad) two or three rows alone as four,
 * the missing rows zeros (their sums dropped): on the Zen 4 EPYC with 8 rows a block one row took 56
 * ms, four rows 62, two rows 82 as a block of two (docs/results.md, twenty-sixth session); on the Zen 5
 * EPYC with 4 rows a block two rows as they are cost one row's time, padded 1.6x. Past four rows the
 * rest reads the weights from cache. Every row's sums are the same whichever block computes them (a
 * failed allocation leaves the block of two or three as it is).
 *
 * Written once for each layout (IL_KERNELS(4), IL_KERNELS(8)): with IL a constant of its own, the
 * sums stay in registers (a shared body with IL a parameter measured slower at four and eight rows).
 * After the chunks the sums are stored and reduced four at a time (hsum4, the same additions as
 * hsum16): one sum at a time cost about 15 cycles each, 3.2 million of them in a four-row step of the
 * 1.5B target. Two things keep the chunk loop as it was: the block's weights are held in registers
 * (an empty asm; without it GCC 12 reloaded them for every row), and the sums reach the reduction
 * through memory. On the Zen 5 EPYC, the target's 197 products (thirty-second session,
 * docs/results.md): one row 36.4 -> 34.7 ms, three 40.9 -> 37.1, four 41.9 -> 40.4, six 55.0 -> 51.5,
 * eight 64.0 -> 57.9; the sums are unchanged, bit for bit. */
#define IL_KERNELS(IL)                                                                                                 \
    INLINE void ilblk##IL(const uint16_t *x, int R, const uint16_t *blk, const float *bo, float *yo, long K, long ys) { \
        __m512 acc[6][IL];                                                                                             \
        for (int r = 0; r < R; r++)                                                                                    \
            for (int c = 0; c < IL; c++) acc[r][c] = _mm512_setzero_ps();                                              \
        long KC = K - K % 32, T = K - KC;                                                                              \
        const uint16_t *p = blk;                                                                                       \
        for (long k = 0; k < KC; k += 32, p += IL * 32) {                                                              \
            __m512bh wv[IL];                                                                                           \
            for (int c = 0; c < IL; c++) _mm_prefetch((const char *)p + RD_IL_PF + c * 64, _MM_HINT_T1);               \
            for (int c = 0; c < IL; c++) wv[c] = (__m512bh)_mm512_loadu_si512((const void *)(p + c * 32));             \
            for (int c = 0; c < IL; c++) __asm__("" : "+v"(wv[c])); /* held in registers, not loaded per row */        \
            for (int r = 0; r < R; r++) {                                                                              \
                __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(x + r * K + k));                             \
                for (int c = 0; c < IL; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);                       \
            }                                                                                                          \
        }                                                                                                              \
        float sb[6 * IL * 16]; /* the sums, out of their registers, then summed four at a time (hsum4) */               \
        for (int r = 0; r < R; r++)                                                                                    \
            for (int c = 0; c < IL; c++) _mm512_storeu_ps(sb + (r * IL + c) * 16, acc[r][c]);                          \
        __asm__ volatile("" : : "r"(sb) : "memory");                                                                   \
        const uint16_t *tail = blk + IL * KC;                                                                          \
        for (int r = 0; r < R; r++)                                                                                    \
            for (int c = 0; c < IL; c += 4) {                                                                          \
                float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                                 \
                for (int q = 0; q < 4; q++)                                                                            \
                    for (long k = 0; k < T; k++) t[q] += bf(x[r * K + KC + k]) * bf(tail[(c + q) * T + k]);            \
                const float *a = sb + (r * IL + c) * 16;                                                               \
                __m128 s = hsum4(_mm512_loadu_ps(a), _mm512_loadu_ps(a + 16), _mm512_loadu_ps(a + 32), _mm512_loadu_ps(a + 48)); \
                s = _mm_add_ps(s, _mm_loadu_ps(t));                                                                    \
                _mm_storeu_ps(yo + r * ys + c, bo ? _mm_add_ps(s, _mm_loadu_ps(bo + c)) : s);                          \
            }                                                                                                          \
    }                                                                                                                  \
    static void ilrun##IL(const uint16_t *x, const uint16_t *w, const float *b, float *y, long n, long K, long O,      \
                          int threads, int pad) {                                                                      \
        long n4 = n <= (IL == 4 ? 6 : 4) ? 0 : n - n % 4, m = n - n4;                                                 \
        uint16_t *xp = NULL;                                                                                           \
        if (pad && (n == 2 || n == 3)) {                                                                               \
            xp = calloc(4 * K, sizeof *xp);                                                                            \
            if (xp) memcpy(xp, x, n * K * sizeof *xp);                                                                 \
        }                                                                                                              \
        _Pragma("omp parallel for num_threads(threads) schedule(static)") for (long j = 0; j < O / IL; j++) {          \
            const uint16_t *blk = w + j * IL * K;                                                                      \
            const float *bo = b ? b + IL * j : NULL;                                                                   \
            for (long i = 0; i < n4; i += 4) ilblk##IL(x + i * K, 4, blk, bo, y + i * O + IL * j, K, O);               \
            float *yr = y + n4 * O + IL * j;                                                                           \
            if (xp) {                                                                                                  \
                float t[4 * IL];                                                                                       \
                ilblk##IL(xp, 4, blk, bo, t, K, IL);                                                                   \
                for (long r = 0; r < m; r++) memcpy(yr + r * O, t + r * IL, IL * sizeof *t);                           \
            } else {                                                                                                   \
                switch (m) {                                                                                           \
                case 6: ilblk##IL(x + n4 * K, 6, blk, bo, yr, K, O); break;                                            \
                case 5: ilblk##IL(x + n4 * K, 5, blk, bo, yr, K, O); break;                                            \
                case 4: ilblk##IL(x + n4 * K, 4, blk, bo, yr, K, O); break;                                            \
                case 3: ilblk##IL(x + n4 * K, 3, blk, bo, yr, K, O); break;                                            \
                case 2: ilblk##IL(x + n4 * K, 2, blk, bo, yr, K, O); break;                                            \
                case 1: ilblk##IL(x + n4 * K, 1, blk, bo, yr, K, O); break;                                            \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
        free(xp);                                                                                                      \
        for (long o = O / IL * IL; o < O; o++)                                                                         \
            for (long i = 0; i < n; i++) {                                                                             \
                float s = d11(x + i * K, w + o * K, K);                                                                \
                y[i * O + o] = b ? s + b[o] : s;                                                                       \
            }                                                                                                          \
    }

IL_KERNELS(4)
IL_KERNELS(8)

/* `layout`: the weight rows a block (4 or 8, as packed), plus 16 to pad two or three rows to four. */
void rowdot_il(const uint16_t *x, const uint16_t *w, const float *b, float *y, long n, long K, long O, int threads, int layout) {
    int pad = (layout & 16) != 0;
    if ((layout & 15) == 4)
        ilrun4(x, w, b, y, n, K, O, threads, pad);
    else
        ilrun8(x, w, b, y, n, K, O, threads, pad);
}
#else
int rowdot_dpbf16_built(void) { return 0; }
#endif

/* rowdot_amx: the same contract (row i of an n-row product is the one-row product of row i, bit for bit)
 * on CPUs with AMX-BF16 (built where the compiler targets it: -march=native). TDPBF16PS multiplies a tile
 * of 16 rows x 32 bfloat16 of x by 32 x 16 of the weights into 16 x 16 float32 sums; each sum reads only
 * its own row of x, so rows padded with zeros to 16 give every row the sums it has alone. Each output is
 * one float32 accumulator over the chunks of 32 k in ascending order (the instruction's own order within
 * a chunk), then the bias. The weights are laid out as the tiles load them (rowdot_amx_pack): per group
 * of 64 outputs, per chunk of 32 k, four tiles of 16 k-pairs x 16 outputs x 2, so each group is one
 * sequential stream (outputs past the last group: tiles of 16 alone). Needs K % 32 == 0 and O % 16 == 0
 * (rowdot.amx_fits). Measured on the 2-core AMX
 * Xeon over the 1.5B target's step (3.09 GB): 133 ms for 1 row and 132 for 8, where rowdot_il took 131
 * and 245 and oneDNN's packed product 161 and 155 (docs/results.md, twenty-seventh session). */
#if defined(__AMX_BF16__) && defined(__AMX_TILE__) && defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RD_AMX_PF
#define RD_AMX_PF 8192 /* bytes ahead on a group's stream, into L2 */
#endif

int rowdot_amx_built(void) { return 1; }

/* Rows r0.. (m of them) of J stored tiles c (16 x 16 sums each, outputs o.. side by side) into y, plus the bias. */
INLINE void amx_put(float (*c)[256], int J, long m, long r0, long o, const float *b, float *y, long O) {
    for (long r = 0; r < m; r++)
        for (int j = 0; j < J; j++)
            for (int q = 0; q < 16; q++) {
                float s = c[j][r * 16 + q];
                y[(r0 + r) * O + o + j * 16 + q] = b ? s + b[o + j * 16 + q] : s;
            }
}

/* Linux hands a process the AMX tile state only when asked (else the first tile instruction faults). */
int rowdot_amx_init(void) { return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0; }

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) amx_cfg;

void rowdot_amx_pack(const uint16_t *w, uint16_t *out, long K, long O) {
    long KC = K / 32;
    for (long o0 = 0; o0 < O; o0 += 16) { /* a tile of 16 outputs: the groups of 64 hold four in turn */
        int grouped = o0 < O / 64 * 64;
        long J = grouped ? 4 : 1, j = grouped ? o0 % 64 / 16 : 0; /* tiles a chunk holds; this one's place */
        uint16_t *base = grouped ? out + o0 / 64 * KC * 2048 : out + O / 64 * KC * 2048 + (o0 - O / 64 * 64) / 16 * KC * 512;
        for (long kc = 0; kc < KC; kc++) {
            uint16_t *t = base + (kc * J + j) * 512;
            for (int p = 0; p < 16; p++)
                for (int c = 0; c < 16; c++) {
                    const uint16_t *src = w + (o0 + c) * K + kc * 32 + 2 * p;
                    t[(p * 16 + c) * 2] = src[0];
                    t[(p * 16 + c) * 2 + 1] = src[1];
                }
        }
    }
}

void rowdot_amx(const uint16_t *x, const uint16_t *w, const float *b, float *y, long n, long K, long O, int threads) {
    long KC = K / 32, G = O / 64, T = O % 64 / 16;
    uint16_t *xp = aligned_alloc(64, 16 * K * sizeof *xp);
    if (!xp) { /* no memory for the padded rows: outputs no one can take for sums */
        for (long i = 0; i < n * O; i++) y[i] = NAN;
        return;
    }
    for (long r0 = 0; r0 < n; r0 += 16) { /* rows sixteen at a time, the last block padded with zeros */
        long m = n - r0 < 16 ? n - r0 : 16;
        memset(xp, 0, 16 * K * sizeof *xp);
        memcpy(xp, x + r0 * K, m * K * sizeof *xp);
#pragma omp parallel num_threads(threads)
        {
            amx_cfg cfg;
            memset(&cfg, 0, sizeof cfg);
            cfg.palette = 1;
            for (int t = 0; t < 7; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
            _tile_loadconfig(&cfg);
            float c[4][256] __attribute__((aligned(64)));
#pragma omp for schedule(static)
            for (long g = 0; g < G + T; g++) {
                if (g >= G) { /* a tile of 16 outputs past the last group of 64 */
                    const uint16_t *p = w + G * KC * 2048 + (g - G) * KC * 512;
                    _tile_zero(0);
                    for (long kc = 0; kc < KC; kc++, p += 512) {
                        _tile_loadd(4, xp + kc * 32, K * sizeof *xp);
                        _tile_loadd(5, p, 64);
                        _tile_dpbf16ps(0, 4, 5);
                    }
                    _tile_stored(0, c[0], 64);
                    amx_put(c, 1, m, r0, G * 64 + (g - G) * 16, b, y, O);
                    continue;
                }
                const uint16_t *p = w + g * KC * 2048;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (long kc = 0; kc < KC; kc++, p += 2048) {
#if RD_AMX_PF
                    for (int l = 0; l < 64; l++) _mm_prefetch((const char *)p + RD_AMX_PF + l * 64, _MM_HINT_T1);
#endif
                    _tile_loadd(4, xp + kc * 32, K * sizeof *xp);
                    _tile_loadd(5, p, 64);
                    _tile_loadd(6, p + 512, 64);
                    _tile_dpbf16ps(0, 4, 5);
                    _tile_dpbf16ps(1, 4, 6);
                    _tile_loadd(5, p + 1024, 64);
                    _tile_loadd(6, p + 1536, 64);
                    _tile_dpbf16ps(2, 4, 5);
                    _tile_dpbf16ps(3, 4, 6);
                }
                _tile_stored(0, c[0], 64);
                _tile_stored(1, c[1], 64);
                _tile_stored(2, c[2], 64);
                _tile_stored(3, c[3], 64);
                amx_put(c, 4, m, r0, g * 64, b, y, O);
            }
            _tile_release();
        }
    }
    free(xp);
}
#else
int rowdot_amx_built(void) { return 0; }
#endif

/* rowdot_i8: weights rounded to int8 per output channel (w[o, k] ~ q[o, k] * s[o]), for drafters only
 * (their precision never reaches the output: the target verifies every token). A quarter of float32's
 * bytes, half of bfloat16's: a draft model's step is its weights' read. x is float32; each output is
 * 16-lane float32 sums over the chunks of 64 k in ascending order (each int8 widened exactly), summed
 * in a fixed tree, times s[o], plus the bias, so row i of an n-row product is still the one-row product
 * of row i. The weights are laid out as it reads them (rowdot_i8_pack): blocks of I8 outputs, per chunk
 * of 64 k the I8 rows' 64 bytes side by side, one sequential stream a block. Rows four at a time (the
 * block's weights then come from L2). Needs K % 64 == 0 and O % I8 == 0 (rowdot.i8_fits). */
#if defined(__AVX512F__)
#include <immintrin.h>
#ifndef I8
#define I8 8 /* outputs a block */
#endif
#ifndef RD_I8_PF
#define RD_I8_PF 4096 /* bytes ahead on the block's stream, into L2 */
#endif

int rowdot_i8_built(void) { return 1; }

void rowdot_i8_pack(const int8_t *w, int8_t *out, long K, long O) {
    for (long b = 0; b < O / I8; b++)
        for (long k = 0; k < K; k += 64)
            for (int c = 0; c < I8; c++) memcpy(out + b * I8 * K + (k / 64 * I8 + c) * 64, w + (b * I8 + c) * K + k, 64);
}

INLINE __m512 i8w(const int8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p))); }

INLINE float i8sum(__m512 v) { /* a fixed tree: 16 -> 8 -> 4 -> 2 -> 1 */
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* R rows of x (1..4) against the block of I8 outputs at blk: y[r * O + c] (y from output o), scales so, bias bo. */
INLINE void i8blk(const float *x, int R, const int8_t *blk, const float *so, const float *bo, float *y, long K, long O) {
    __m512 acc[4][I8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < I8; c++) acc[r][c] = _mm512_setzero_ps();
    const int8_t *p = blk;
    for (long k = 0; k < K; k += 64, p += I8 * 64) {
#if RD_I8_PF
        for (int c = 0; c < I8; c++) _mm_prefetch((const char *)p + RD_I8_PF + c * 64, _MM_HINT_T1);
#endif
        for (int c = 0; c < I8; c++) {
            __m512 w0 = i8w(p + c * 64), w1 = i8w(p + c * 64 + 16), w2 = i8w(p + c * 64 + 32), w3 = i8w(p + c * 64 + 48);
            for (int r = 0; r < R; r++) {
                const float *xr = x + r * K + k;
                __m512 a = acc[r][c];
                a = _mm512_fmadd_ps(_mm512_loadu_ps(xr), w0, a);
                a = _mm512_fmadd_ps(_mm512_loadu_ps(xr + 16), w1, a);
                a = _mm512_fmadd_ps(_mm512_loadu_ps(xr + 32), w2, a);
                acc[r][c] = _mm512_fmadd_ps(_mm512_loadu_ps(xr + 48), w3, a);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < I8; c++) {
            float a = i8sum(acc[r][c]); /* one rounding with the bias, whatever the compiler contracts */
            y[r * O + c] = bo ? __builtin_fmaf(a, so[c], bo[c]) : a * so[c];
        }
}

void rowdot_i8(const float *x, const int8_t *w, const float *s, const float *b, float *y, long n, long K, long O, int threads) {
    long n4 = n - n % 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long j = 0; j < O / I8; j++) {
        const int8_t *blk = w + j * I8 * K;
        const float *so = s + I8 * j, *bo = b ? b + I8 * j : NULL;
        for (long i = 0; i < n4; i += 4) i8blk(x + i * K, 4, blk, so, bo, y + i * O + I8 * j, K, O);
        float *yr = y + n4 * O + I8 * j;
        switch (n - n4) {
        case 3: i8blk(x + n4 * K, 3, blk, so, bo, yr, K, O); break;
        case 2: i8blk(x + n4 * K, 2, blk, so, bo, yr, K, O); break;
        case 1: i8blk(x + n4 * K, 1, blk, so, bo, yr, K, O); break;
        }
    }
}
#else
int rowdot_i8_built(void) { return 0; }
#endif
