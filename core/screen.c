/* The screen of core/screen.py: which tokens of one row of approximate logits could be the first or
 * the second of the exact ones.
 *
 * a[j] is the int8 head's logit of token j; its exact logit (the full-precision head's, rounded to
 * bfloat16) lies within e[j] of it, e[j] = c[j] * l1 + R * (|a[j]| + c[j] * l1): c[j] * l1 bounds the
 * rounding of the weights and both products' float32 sums (core/screen.py derives c), the R term the
 * rounding of the exact logit to bfloat16 with room for this function's own float32 arithmetic. With
 * lo = a - e and hi = a + e, the exact first and second logits are at least the second largest lo,
 * L2; a token whose hi is below L2 is neither. screen_row writes the tokens with hi >= L2 (ascending)
 * to idx and returns how many, or -1 where a logit is not finite or more than cap would be written
 * (the caller then computes the whole row exactly). idx has room for cap + 16.
 *
 * Two passes over the row, 16 tokens a vector: the largest and second largest lo (per lane, then
 * across lanes: the second largest of all, a tie counted twice), then the tokens with hi >= L2.
 * Built by core/screen.py with the flags of core/rowdot.c (no -ffast-math). */
#include <float.h>
#include <math.h>
#include <stdint.h>

#define R 0.0078125f /* 2^-7: a bfloat16's relative spacing is at most this */

#if defined(__AVX512F__)
#include <immintrin.h>

int screen_built(void) { return 1; }

static inline __m512 bound(__m512 va, __m512 vc, __m512 l1) {
    __m512 e0 = _mm512_mul_ps(vc, l1);
    __m512 abs = _mm512_abs_ps(va);
    return _mm512_fmadd_ps(_mm512_set1_ps(R), _mm512_add_ps(abs, e0), e0);
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
    float t1[16], t2[16], top = -INFINITY, second = -INFINITY;
    _mm512_storeu_ps(t1, m1);
    _mm512_storeu_ps(t2, m2);
    for (int l = 0; l < 16; l++) { /* the two largest of the 32: each lane's second is below its first */
        float v = t1[l];
        if (v > top) {
            second = fmaxf(second, top);
            top = v;
        } else {
            second = fmaxf(second, v);
        }
        second = fmaxf(second, t2[l]);
    }
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
#else
int screen_built(void) { return 0; }
#endif
