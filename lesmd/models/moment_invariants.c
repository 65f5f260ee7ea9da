/* Channel-wise contractions of the moment descriptor (lesmd/models/descriptors.py), forward and backward, in C.
 *
 * Inputs are the channel-mixed moments of each order, p_L[c, n, part, k] (component c of order L, atom n, mixing
 * block `part`, channel k), contiguous in that order with 4, 4 and 2 parts for L = 1, 2, 3. Per atom and channel:
 *
 *   I_L = Σ_c p_L[c, ·, 0] p_L[c, ·, 1]                      (L = 1, 2, 3)
 *   T   = uᵀ M w,   u = p_1[:, ·, 2], w = p_1[:, ·, 3], M = p_2[:, ·, 2]   (symmetric M from 6 stored components)
 *   P   = tr(M'³),  M' = p_2[:, ·, 3]
 *
 * Stored components of a symmetric matrix: xx, yy, zz, √2 xy, √2 xz, √2 yz. The output row of atom n is
 * [a0 (K values), I_1, I_2, I_3, T, P (K' values each)]. The torch implementation in descriptors.py is the
 * reference; tests compare both. Arithmetic in the input precision (float or double); atoms split over threads.
 */
#define _GNU_SOURCE /* dladdr, see native_parallel.h */
#include <math.h>
#include <stdint.h>

#include "../native_parallel.h"

#define INV_SQRT2 0.70710678118654752440
#define THREE_OVER_SQRT2 2.12132034355964257320

typedef struct {
    const void *a0, *p1, *p2, *p3, *grad;
    void *out, *g0, *g1, *g2, *g3;
    int64_t n_atoms, k, kp, first, last;
} Job;

#define DEFINE_KERNELS(T, SUFFIX)                                                                                   \
    static void *forward_##SUFFIX(void *arg) {                                                                      \
        const Job *job = (const Job *)arg;                                                                          \
        const int64_t n = job->n_atoms, k = job->k, kp = job->kp, width = k + 5 * kp;                             \
        const T *restrict a0 = (const T *)job->a0, *restrict p1 = (const T *)job->p1,                             \
                *restrict p2 = (const T *)job->p2, *restrict p3 = (const T *)job->p3;                               \
        T *restrict out = (T *)job->out;                                                                             \
        for (int64_t i = job->first; i < job->last; i++) {                                                          \
            T *row = out + i * width;                                                                                \
            for (int64_t c = 0; c < k; c++) row[c] = a0[i * k + c];                                                  \
            T *restrict i1 = row + k, *restrict i2 = i1 + kp, *restrict i3 = i2 + kp, *restrict tt = i3 + kp,      \
              *restrict pp = tt + kp;                                                                                \
            for (int64_t q = 0; q < kp; q++) i1[q] = i2[q] = i3[q] = 0;                                              \
            for (int c = 0; c < 3; c++) {                                                                            \
                const T *b = p1 + (c * n + i) * 4 * kp;                                                              \
                for (int64_t q = 0; q < kp; q++) i1[q] += b[q] * b[kp + q];                                         \
            }                                                                                                        \
            for (int c = 0; c < 6; c++) {                                                                            \
                const T *b = p2 + (c * n + i) * 4 * kp;                                                              \
                for (int64_t q = 0; q < kp; q++) i2[q] += b[q] * b[kp + q];                                         \
            }                                                                                                        \
            for (int c = 0; c < 10; c++) {                                                                           \
                const T *b = p3 + (c * n + i) * 2 * kp;                                                              \
                for (int64_t q = 0; q < kp; q++) i3[q] += b[q] * b[kp + q];                                         \
            }                                                                                                        \
            const T *u[3], *w[3], *m[6], *s[6];                                                                      \
            for (int c = 0; c < 3; c++) {                                                                            \
                u[c] = p1 + (c * n + i) * 4 * kp + 2 * kp;                                                           \
                w[c] = u[c] + kp;                                                                                    \
            }                                                                                                        \
            for (int c = 0; c < 6; c++) {                                                                            \
                m[c] = p2 + (c * n + i) * 4 * kp + 2 * kp;                                                           \
                s[c] = m[c] + kp;                                                                                    \
            }                                                                                                        \
            for (int64_t q = 0; q < kp; q++) {                                                                       \
                T ux = u[0][q], uy = u[1][q], uz = u[2][q], wx = w[0][q], wy = w[1][q], wz = w[2][q];               \
                T diag = m[0][q] * ux * wx + m[1][q] * uy * wy + m[2][q] * uz * wz;                                 \
                T off = m[3][q] * (ux * wy + uy * wx) + m[4][q] * (ux * wz + uz * wx) + m[5][q] * (uy * wz + uz * wy);\
                tt[q] = diag + off * (T)INV_SQRT2;                                                                   \
                T a = s[0][q], bb = s[1][q], cc = s[2][q], d = s[3][q], e = s[4][q], f = s[5][q];                   \
                T dd = d * d, ee = e * e, ff = f * f;                                                                \
                pp[q] = a * a * a + bb * bb * bb + cc * cc * cc + (T)1.5 * (a * (dd + ee) + bb * (dd + ff) + cc * (ee + ff)) \
                        + (T)THREE_OVER_SQRT2 * d * e * f;                                                           \
            }                                                                                                        \
        }                                                                                                            \
        return NULL;                                                                                                 \
    }                                                                                                                \
                                                                                                                     \
    static void *backward_##SUFFIX(void *arg) {                                                                     \
        const Job *job = (const Job *)arg;                                                                          \
        const int64_t n = job->n_atoms, k = job->k, kp = job->kp, width = k + 5 * kp;                             \
        const T *restrict p1 = (const T *)job->p1, *restrict p2 = (const T *)job->p2,                             \
                *restrict p3 = (const T *)job->p3, *restrict grad = (const T *)job->grad;                           \
        T *restrict g0 = (T *)job->g0, *restrict g1 = (T *)job->g1, *restrict g2 = (T *)job->g2,                  \
          *restrict g3 = (T *)job->g3;                                                                               \
        for (int64_t i = job->first; i < job->last; i++) {                                                          \
            const T *row = grad + i * width;                                                                         \
            for (int64_t c = 0; c < k; c++) g0[i * k + c] = row[c];                                                  \
            const T *d1 = row + k, *d2 = d1 + kp, *d3 = d2 + kp, *dt = d3 + kp, *dp = dt + kp;                      \
            for (int c = 0; c < 3; c++) {                                                                            \
                const T *b = p1 + (c * n + i) * 4 * kp;                                                              \
                T *gb = g1 + (c * n + i) * 4 * kp;                                                                   \
                for (int64_t q = 0; q < kp; q++) gb[q] = d1[q] * b[kp + q], gb[kp + q] = d1[q] * b[q];             \
            }                                                                                                        \
            for (int c = 0; c < 6; c++) {                                                                            \
                const T *b = p2 + (c * n + i) * 4 * kp;                                                              \
                T *gb = g2 + (c * n + i) * 4 * kp;                                                                   \
                for (int64_t q = 0; q < kp; q++) gb[q] = d2[q] * b[kp + q], gb[kp + q] = d2[q] * b[q];             \
            }                                                                                                        \
            for (int c = 0; c < 10; c++) {                                                                           \
                const T *b = p3 + (c * n + i) * 2 * kp;                                                              \
                T *gb = g3 + (c * n + i) * 2 * kp;                                                                   \
                for (int64_t q = 0; q < kp; q++) gb[q] = d3[q] * b[kp + q], gb[kp + q] = d3[q] * b[q];             \
            }                                                                                                        \
            const T *restrict u[3], *restrict w[3], *restrict m[6], *restrict s[6];                                  \
            T *restrict gu[3], *restrict gw[3], *restrict gm[6], *restrict gs[6];                                                                        \
            for (int c = 0; c < 3; c++) {                                                                            \
                u[c] = p1 + (c * n + i) * 4 * kp + 2 * kp, w[c] = u[c] + kp;                                         \
                gu[c] = g1 + (c * n + i) * 4 * kp + 2 * kp, gw[c] = gu[c] + kp;                                      \
            }                                                                                                        \
            for (int c = 0; c < 6; c++) {                                                                            \
                m[c] = p2 + (c * n + i) * 4 * kp + 2 * kp, s[c] = m[c] + kp;                                         \
                gm[c] = g2 + (c * n + i) * 4 * kp + 2 * kp, gs[c] = gm[c] + kp;                                      \
            }                                                                                                        \
            for (int64_t q = 0; q < kp; q++) {                                                                       \
                T g = dt[q], h = (T)INV_SQRT2;                                                                       \
                T ux = u[0][q], uy = u[1][q], uz = u[2][q], wx = w[0][q], wy = w[1][q], wz = w[2][q];               \
                T mxx = m[0][q], myy = m[1][q], mzz = m[2][q], mxy = m[3][q] * h, mxz = m[4][q] * h,               \
                  myz = m[5][q] * h;                                                                                 \
                gm[0][q] = g * ux * wx, gm[1][q] = g * uy * wy, gm[2][q] = g * uz * wz;                             \
                gm[3][q] = g * h * (ux * wy + uy * wx), gm[4][q] = g * h * (ux * wz + uz * wx);                     \
                gm[5][q] = g * h * (uy * wz + uz * wy);                                                              \
                gu[0][q] = g * (mxx * wx + mxy * wy + mxz * wz), gu[1][q] = g * (mxy * wx + myy * wy + myz * wz);   \
                gu[2][q] = g * (mxz * wx + myz * wy + mzz * wz);                                                     \
                gw[0][q] = g * (mxx * ux + mxy * uy + mxz * uz), gw[1][q] = g * (mxy * ux + myy * uy + myz * uz);   \
                gw[2][q] = g * (mxz * ux + myz * uy + mzz * uz);                                                     \
                T gp = dp[q], a = s[0][q], bb = s[1][q], cc = s[2][q], d = s[3][q], e = s[4][q], f = s[5][q];       \
                T dd = d * d, ee = e * e, ff = f * f, r = (T)THREE_OVER_SQRT2;                                       \
                gs[0][q] = gp * (3 * a * a + (T)1.5 * (dd + ee));                                                    \
                gs[1][q] = gp * (3 * bb * bb + (T)1.5 * (dd + ff));                                                  \
                gs[2][q] = gp * (3 * cc * cc + (T)1.5 * (ee + ff));                                                  \
                gs[3][q] = gp * (3 * d * (a + bb) + r * e * f);                                                      \
                gs[4][q] = gp * (3 * e * (a + cc) + r * d * f);                                                      \
                gs[5][q] = gp * (3 * f * (bb + cc) + r * d * e);                                                     \
            }                                                                                                        \
        }                                                                                                            \
        return NULL;                                                                                                 \
    }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

static void run(Job job, int64_t n_threads, void *(*worker)(void *)) {
    if (n_threads < 1 || job.n_atoms < 2) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    Job jobs[64];
    for (int64_t t = 0; t < n_threads; t++) {
        jobs[t] = job;
        jobs[t].first = job.n_atoms * t / n_threads, jobs[t].last = job.n_atoms * (t + 1) / n_threads;
    }
    run_jobs(jobs, n_threads, sizeof(Job), worker);
}

/* out (N, K + 5K') from a0 (N, K) and p1 (3, N, 4, K'), p2 (6, N, 4, K'), p3 (10, N, 2, K'). */
int moment_invariants_forward(const void *a0, const void *p1, const void *p2, const void *p3, int64_t n_atoms,
                              int64_t k, int64_t kp, void *out, int is_double, int64_t n_threads) {
    Job job = {a0, p1, p2, p3, 0, out, 0, 0, 0, 0, n_atoms, k, kp, 0, n_atoms};
    run(job, n_threads, is_double ? forward_f64 : forward_f32);
    return 0;
}

/* Gradients g0 (N, K), g1, g2, g3 (shapes of p1, p2, p3; every entry written) from grad (N, K + 5K'). */
int moment_invariants_backward(const void *grad, const void *p1, const void *p2, const void *p3, int64_t n_atoms,
                               int64_t k, int64_t kp, void *g0, void *g1, void *g2, void *g3, int is_double,
                               int64_t n_threads) {
    Job job = {0, p1, p2, p3, grad, 0, g0, g1, g2, g3, n_atoms, k, kp, 0, n_atoms};
    run(job, n_threads, is_double ? backward_f64 : backward_f32);
    return 0;
}
