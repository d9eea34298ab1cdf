/* The screen of core/screen.py: which tokens of one row of approximate logits could be the first or
 * the second of the exact ones.
 *
 * a[j] is the int8 head's logit of token j; its exact logit (the full-precision head's, rounded to
 * bfloat16) lies within e[j] of it, e[j] = c[j] * l1 + SLACK * (|a[j]| + c[j] * l1): c[j] * l1 bounds the
 * rounding of the weights and both products' float32 sums (core/screen.py derives c), the SLACK term the
 * rounding of the exact logit to bfloat16 with room for this function's own float32 arithmetic. With
 * lo = a - e and hi = a + e, the exact first and second logits are at least the second largest lo,
 * L2; a token whose hi is below L2 is neither. screen_row writes the tokens with hi >= L2 (ascending)
 * to idx and returns how many, or -1 where a logit is not finite or more than cap would be written
 * (the caller then computes the whole row exactly). idx has room for cap + 16.
 *
 * Two passes over the row, 16 tokens a vector: the largest and second largest lo (per lane, then
 * across lanes: the second largest of all, a tie counted twice), then the tokens with hi >= L2.
 * Built by core/screen.py with the flags of core/rowdot.c (no -ffast-math).
 *
 * Without AVX512F (the AVX2 kind) the same in 8 lanes, and the int8 head's logits come from this file
 * too (screen_i8, on weights laid out by screen_i8_pack as rowdot_i8's: blocks of 8 outputs, per chunk
 * of 64 k the block's 8 rows' 64 bytes side by side, one sequential stream a block): each weight widened
 * exactly to float32 once for up to three rows, one 8-lane float32 accumulator an output over the
 * chunks in ascending order, its lanes summed in a fixed tree, times the row's scale; a row computed
 * alike in any block of rows. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#define SLACK 0.0078125f /* 2^-7: a bfloat16's relative spacing is at most this */

/* The second largest of the lanes' largest (t1) and second largest (t2) values, a tie counted twice:
 * each lane's second is below its first. */
static inline float second_of(const float *t1, const float *t2, int lanes) {
    float top = -INFINITY, second = -INFINITY;
    for (int l = 0; l < lanes; l++) {
        float v = t1[l];
        if (v > top) {
            second = fmaxf(second, top);
            top = v;
        } else {
            second = fmaxf(second, v);
        }
        second = fmaxf(second, t2[l]);
    }
    return second;
}

#if defined(__AVX512F__)
#include <immintrin.h>

int screen_built(void) { return 1; }

static inline __m512 bound(__m512 va, __m512 vc, __m512 l1) {
    __m512 e0 = _mm512_mul_ps(vc, l1);
    __m512 abs = _mm512_abs_ps(va);
    return _mm512_fmadd_ps(_mm512_set1_ps(SLACK), _mm512_add_ps(abs, e0), e0);
}

long screen_row(const float *a, const float *c, float l1, long V, int32_t *idx, long cap) {
    const __m512 L1 = _mm512_set1_ps(l1), NEG = _mm512_set1_ps(-INFINITY), BIG = _mm512_set1_ps(FLT_MAX);
    __m512 m1 = NEG, m2 = NEG;
    __mmask16 bad = 0;
    for (long j = 0; j < V; j += 16) {
        __mmask16 k = V - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (V - j)) - 1);
        __m512 va = _mm512_maskz_loadu_ps(k, a + j), vc = _mm512_maskz_loadu_ps(k, c + j);
        bad |= _mm512_mask_cmp_ps_mask(k, _mm512_abs_ps(va), BIG, _CMP_NLE_UQ); /* inf or nan */
        __m512 lo = _mm512_mask_blend_ps(k, NEG, _mm512_sub_ps(va, bound(va, vc, L1)));
        m2 = _mm512_max_ps(m2, _mm512_min_ps(m1, lo));
        m1 = _mm512_max_ps(m1, lo);
    }
    if (bad || !(l1 <= FLT_MAX)) return -1;
    float t1[16], t2[16];
    _mm512_storeu_ps(t1, m1);
    _mm512_storeu_ps(t2, m2);
    float second = second_of(t1, t2, 16);
    if (!(second > -INFINITY)) return -1; /* fewer than two tokens */
    const __m512 L2 = _mm512_set1_ps(second);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    long n = 0;
    for (long j = 0; j < V; j += 16, at = _mm512_add_epi32(at, step)) {
        __mmask16 k = V - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (V - j)) - 1);
        __m512 va = _mm512_maskz_loadu_ps(k, a + j), vc = _mm512_maskz_loadu_ps(k, c + j);
        __mmask16 in = _mm512_mask_cmp_ps_mask(k, _mm512_add_ps(va, bound(va, vc, L1)), L2, _CMP_GE_OQ);
        if (in) {
            _mm512_mask_compressstoreu_epi32(idx + n, in, at);
            n += __builtin_popcount(in);
            if (n > cap) return -1;
        }
    }
    return n;
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <string.h>

int screen_built(void) { return 1; }

static inline __m256 bound8(__m256 va, __m256 vc, __m256 l1) {
    __m256 e0 = _mm256_mul_ps(vc, l1);
    __m256 abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), va);
    return _mm256_fmadd_ps(_mm256_set1_ps(SLACK), _mm256_add_ps(abs, e0), e0);
}

static inline __m256 load8(const float *p, long left) { /* up to 8 floats, the rest fill */
    if (left >= 8) return _mm256_loadu_ps(p);
    float t[8] = {0};
    memcpy(t, p, left * sizeof(float));
    return _mm256_loadu_ps(t);
}

long screen_row(const float *a, const float *c, float l1, long V, int32_t *idx, long cap) {
    const __m256 L1 = _mm256_set1_ps(l1), NEG = _mm256_set1_ps(-INFINITY), BIG = _mm256_set1_ps(FLT_MAX), SIGN = _mm256_set1_ps(-0.0f);
    __m256 m1 = NEG, m2 = NEG;
    int bad = 0;
    for (long j = 0; j < V; j += 8) {
        long left = V - j;
        __m256 va = load8(a + j, left), vc = load8(c + j, left);
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(SIGN, va), BIG, _CMP_NLE_UQ));
        __m256 lo = _mm256_sub_ps(va, bound8(va, vc, L1));
        if (left < 8) { /* lanes past the row: -inf */
            int keep = (1 << left) - 1;
            __m256 in = _mm256_castsi256_ps(_mm256_setr_epi32(keep & 1 ? -1 : 0, keep & 2 ? -1 : 0, keep & 4 ? -1 : 0, keep & 8 ? -1 : 0,
                                                              keep & 16 ? -1 : 0, keep & 32 ? -1 : 0, keep & 64 ? -1 : 0, 0));
            lo = _mm256_blendv_ps(NEG, lo, in);
        }
        m2 = _mm256_max_ps(m2, _mm256_min_ps(m1, lo));
        m1 = _mm256_max_ps(m1, lo);
    }
    if (bad || !(l1 <= FLT_MAX)) return -1;
    float t1[8], t2[8];
    _mm256_storeu_ps(t1, m1);
    _mm256_storeu_ps(t2, m2);
    float second = second_of(t1, t2, 8);
    if (!(second > -INFINITY)) return -1; /* fewer than two tokens */
    const __m256 L2 = _mm256_set1_ps(second);
    long n = 0;
    for (long j = 0; j < V; j += 8) {
        long left = V - j;
        __m256 va = load8(a + j, left), vc = load8(c + j, left);
        int in = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_add_ps(va, bound8(va, vc, L1)), L2, _CMP_GE_OQ));
        if (left < 8) in &= (1 << left) - 1;
        while (in) {
            int l = __builtin_ctz(in);
            in &= in - 1;
            idx[n++] = (int32_t)(j + l);
            if (n > cap) return -1;
        }
    }
    return n;
}

void screen_i8_pack(const int8_t *w, int8_t *out, long K, long O) {
    for (long b = 0; b < O / 8; b++)
        for (long k = 0; k < K; k += 64)
            for (int c = 0; c < 8; c++) memcpy(out + b * 8 * K + (k / 64 * 8 + c) * 64, w + (b * 8 + c) * K + k, 64);
}

static inline float sum8(__m256 v) { /* a fixed tree: 8 -> 4 -> 2 -> 1 */
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* y (n x O, float32) = x (n x K, float32) against the int8 weights w (screen_i8_pack's layout) times
 * the scales s. Needs K % 64 == 0 and O % 8 == 0. */
/* R rows (1..3) of x against outputs c0..c0+3 of the block at blk: each weight widened once for the R rows
 * (12 accumulators, a weight vector, a row of x: 14 of the 16 registers). */
static inline __attribute__((always_inline)) void i8quad(const float *x, int R, const int8_t *blk, int c0, const float *so, float *y, long K,
                                                         long O) {
    __m256 acc[3][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
    const int8_t *p = blk;
    for (long k = 0; k < K; k += 64, p += 8 * 64) {
        if (c0 == 0) _mm_prefetch((const char *)p + 4096, _MM_HINT_T1);
        for (int c = 0; c < 4; c++)
            for (int q = 0; q < 64; q += 8) {
                __m256 wv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + (c0 + c) * 64 + q))));
                for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * K + k + q), wv, acc[r][c]);
            }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) y[r * O + c0 + c] = sum8(acc[r][c]) * so[c0 + c];
}

/* One row of x against the block's 8 outputs: the block read in one pass (8 accumulators). */
static inline void i8one(const float *xr, const int8_t *blk, const float *so, float *y, long K) {
    __m256 acc[8];
    for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
    const int8_t *p = blk;
    for (long k = 0; k < K; k += 64, p += 8 * 64) {
        _mm_prefetch((const char *)p + 4096, _MM_HINT_T1);
        for (int c = 0; c < 8; c++)
            for (int q = 0; q < 64; q += 8) {
                __m256 wv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + c * 64 + q))));
                acc[c] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k + q), wv, acc[c]);
            }
    }
    for (int c = 0; c < 8; c++) y[c] = sum8(acc[c]) * so[c];
}

/* Rows three or two at a time (each weight widened once for them: i8quad), a last row alone (i8one:
 * one pass over the block, which a lone row's read of memory needs); the same sums either way. */
void screen_i8(const float *x, const int8_t *w, const float *s, float *y, long n, long K, long O, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long j = 0; j < O / 8; j++) {
        const int8_t *blk = w + j * 8 * K;
        for (long r = 0; r < n; r += 3) {
            const float *xr = x + r * K;
            float *yr = y + r * O + j * 8;
            long R = n - r >= 3 ? 3 : n - r;
            if (R == 1) {
                i8one(xr, blk, s + j * 8, yr, K);
                continue;
            }
            for (int c0 = 0; c0 < 8; c0 += 4) {
                if (R == 3)
                    i8quad(xr, 3, blk, c0, s + j * 8, yr, K, O);
                else
                    i8quad(xr, 2, blk, c0, s + j * 8, yr, K, O);
            }
        }
    }
}

int screen_i8_built(void) { return 1; }
#else
int screen_built(void) { return 0; }
#endif
#if !(defined(__AVX2__) && defined(__FMA__)) || defined(__AVX512F__)
int screen_i8_built(void) { return 0; } /* with AVX512F the int8 logits are rowdot_i8's */
#endif
