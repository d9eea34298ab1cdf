/* y[i, o] = dot(x[i, :], w[o, :]) (+ b[o]): a matrix product for a few rows whose every output is
 * computed in one fixed order, whatever the number of rows and whichever block computes it.
 *
 * Every dot product: one 8-lane accumulator over chunks of 8 (k ascending), its lanes summed
 * pairwise in a fixed tree, then the tail (k past the last chunk) in order, then the bias. Rows are
 * taken two at a time against four weight rows (b24: the weights read once for both rows), a last
 * odd row alone (b14), outputs past the last four alone (b11): the three kernels do the same
 * arithmetic per dot product, so row i of an n-row product equals the one-row product of row i,
 * bit for bit. Built and loaded by core/rowdot.py (no floating-point reassociation is allowed:
 * no -ffast-math). */
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));

static inline v8 ld(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float fin(v8 s, const float *x, const float *w, long k, long K) {
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    float t = 0.0f;
    for (; k < K; k++) t += x[k] * w[k];
    return r + t;
}

static void b24(const float *x0, const float *x1, const float *w, long K, float *r0, float *r1) {
    const float *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
    long K8 = K & ~7L;
    for (long k = 0; k < K8; k += 8) {
        v8 p = ld(w0 + k), q = ld(w1 + k), u = ld(w2 + k), v = ld(w3 + k), xa = ld(x0 + k), xb = ld(x1 + k);
        a0 += xa * p; a1 += xa * q; a2 += xa * u; a3 += xa * v;
        c0 += xb * p; c1 += xb * q; c2 += xb * u; c3 += xb * v;
    }
    r0[0] = fin(a0, x0, w0, K8, K); r0[1] = fin(a1, x0, w1, K8, K);
    r0[2] = fin(a2, x0, w2, K8, K); r0[3] = fin(a3, x0, w3, K8, K);
    r1[0] = fin(c0, x1, w0, K8, K); r1[1] = fin(c1, x1, w1, K8, K);
    r1[2] = fin(c2, x1, w2, K8, K); r1[3] = fin(c3, x1, w3, K8, K);
}

static void b14(const float *x0, const float *w, long K, float *r0) {
    const float *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    long K8 = K & ~7L;
    for (long k = 0; k < K8; k += 8) {
        v8 xa = ld(x0 + k);
        a0 += xa * ld(w0 + k); a1 += xa * ld(w1 + k); a2 += xa * ld(w2 + k); a3 += xa * ld(w3 + k);
    }
    r0[0] = fin(a0, x0, w0, K8, K); r0[1] = fin(a1, x0, w1, K8, K);
    r0[2] = fin(a2, x0, w2, K8, K); r0[3] = fin(a3, x0, w3, K8, K);
}

static float b11(const float *x0, const float *w0, long K) {
    v8 a = {0};
    long K8 = K & ~7L;
    for (long k = 0; k < K8; k += 8) a += ld(x0 + k) * ld(w0 + k);
    return fin(a, x0, w0, K8, K);
}

/* x (n, K), w (O, K), b (O) or NULL, y (n, O); all contiguous float32. */
void rowdot_f32(const float *x, const float *w, const float *b, float *y, long n, long K, long O, int threads) {
    long quads = O / 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long j = 0; j < quads; j++) {
        long o = 4 * j;
        const float *wq = w + o * K;
        float r0[4], r1[4];
        long i = 0;
        for (; i + 2 <= n; i += 2) {
            b24(x + i * K, x + (i + 1) * K, wq, K, r0, r1);
            for (int t = 0; t < 4; t++) {
                y[i * O + o + t] = b ? r0[t] + b[o + t] : r0[t];
                y[(i + 1) * O + o + t] = b ? r1[t] + b[o + t] : r1[t];
            }
        }
        if (i < n) {
            b14(x + i * K, wq, K, r0);
            for (int t = 0; t < 4; t++) y[i * O + o + t] = b ? r0[t] + b[o + t] : r0[t];
        }
    }
    for (long o = 4 * quads; o < O; o++)
        for (long i = 0; i < n; i++) {
            float r = b11(x + i * K, w + o * K, K);
            y[i * O + o] = b ? r + b[o] : r;
        }
}
