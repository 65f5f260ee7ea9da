/* 3-D real FFTs for the LES mesh node (uniform_mesh.c), in double precision, for mesh sizes whose prime factors
 * are 2, 3 and 5 (lesmd.les.mesh.fft_size; any other prime up to FFT_MAX_RADIX through a plain DFT stage).
 *
 *   forward:  X[m1, m2, m3] = Σ_k x[k1, k2, k3] e^(−2πi (m1 k1/K1 + m2 k2/K2 + m3 k3/K3)),  m3 = 0 … K3/2
 *   inverse:  x[k] = (1/(K1 K2 K3)) Σ_m X[m] e^(+2πi …) over the full mesh, X Hermitian in m3
 *
 * the conventions of torch.fft.rfftn / irfftn (numpy's); the tests compare both. Every 1-D transform runs on a
 * batch of lines at once: the data of one axis is laid out as rows (one per index along that axis) of contiguous
 * columns (one per line), real and imaginary parts in separate arrays, and each stage of a Stockham autosort FFT
 * (Govindaraju et al., SC 2008; radices 8, 4, 2, 3, 5) combines whole rows with scalar twiddles, so the inner loops
 * run over contiguous columns and vectorise. The real last axis is transformed two lines at a time as one complex
 * line x + i y (the halves separated by the symmetry of real transforms). Columns are split over threads (run_jobs
 * of native_parallel.h, which the kernel includes before this header).
 *
 * Why not torch's FFT here: at MD sizes (24³ for 192 water molecules) a torch.fft call costs several times its
 * arithmetic when caches are cold, and a transform inside the kernel lets the node's arithmetic share its pass.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the rows of one stage never overlap (Stockham: separate source and destination buffers), which the compiler
   cannot see through the row pointer tables: without this its vectoriser gives up on the 4- and 8-point loops */
#if defined(__GNUC__) && !defined(__clang__)
#define LESMD_IVDEP _Pragma("GCC ivdep")
#else
#define LESMD_IVDEP
#endif

#define FFT_MAX_STAGES 40
/* largest radix: a mesh size with a prime factor beyond it is refused */
#define FFT_MAX_RADIX 64

typedef struct {
    int n, n_stages;
    int radix[FFT_MAX_STAGES], span[FFT_MAX_STAGES]; /* span Ns: length of the sub-transforms entering the stage */
    double *twiddle; /* per stage, Ns·(R − 1) pairs (cos, sin) of −2π k r/(Ns R), k < Ns, 1 ≤ r < R */
    int64_t offset[FFT_MAX_STAGES];
} FftPlan;

/* 0, 1 for a prime factor beyond FFT_MAX_RADIX, 2 out of memory. */
static int fft_plan_init(FftPlan *plan, int n) {
    plan->n = n, plan->n_stages = 0, plan->twiddle = NULL;
    int rest = n;
    const int preferred[5] = {8, 4, 2, 3, 5};
    for (int f = 0; f < 5; f++)
        while (rest % preferred[f] == 0 && plan->n_stages < FFT_MAX_STAGES) {
            plan->radix[plan->n_stages++] = preferred[f];
            rest /= preferred[f];
        }
    for (int p = 7; rest > 1 && p <= FFT_MAX_RADIX && plan->n_stages < FFT_MAX_STAGES; p += 2)
        while (rest % p == 0 && plan->n_stages < FFT_MAX_STAGES) {
            plan->radix[plan->n_stages++] = p;
            rest /= p;
        }
    if (rest > 1) return 1;
    int64_t total = 0, span = 1;
    for (int s = 0; s < plan->n_stages; s++) {
        plan->span[s] = (int)span, plan->offset[s] = total;
        total += span * (plan->radix[s] - 1);
        span *= plan->radix[s];
    }
    plan->twiddle = (double *)malloc(sizeof(double) * 2 * (size_t)(total > 0 ? total : 1));
    if (plan->twiddle == NULL) return 2;
    for (int s = 0; s < plan->n_stages; s++) {
        const int r_max = plan->radix[s], ns = plan->span[s];
        double *t = plan->twiddle + 2 * plan->offset[s];
        for (int k = 0; k < ns; k++)
            for (int r = 1; r < r_max; r++) {
                const double angle = -2.0 * M_PI * (double)k * (double)r / ((double)ns * (double)r_max);
                t[2 * (k * (r_max - 1) + r - 1)] = cos(angle);
                t[2 * (k * (r_max - 1) + r - 1) + 1] = sin(angle);
            }
    }
    return 0;
}

static void fft_plan_free(FftPlan *plan) { free(plan->twiddle); }

/* One radix-R stage of a batch: for j < n/R, rows j + r n/R of (sr, si) times the twiddles, an R-point DFT, into
   rows (j/Ns) Ns R + j%Ns + r Ns of (dr, di); columns [c0, c1) of rows of length ld. sign = −1 forward, +1 inverse. */
static void fft_stage_rows(const double *restrict sr, const double *restrict si, double *restrict dr,
                           double *restrict di, int n, int radix, int ns, const double *twiddle, int64_t ld,
                           int64_t c0, int64_t c1, double sign) {
    const int quarter = n / radix;
    for (int j = 0; j < quarter; j++) {
        const int k = j % ns;
        const int64_t dst = (int64_t)(j / ns) * ns * radix + k;
        double wr[FFT_MAX_RADIX], wi[FFT_MAX_RADIX];
        wr[0] = 1.0, wi[0] = 0.0;
        for (int r = 1; r < radix; r++)
            wr[r] = twiddle[2 * (k * (radix - 1) + r - 1)], wi[r] = -sign * twiddle[2 * (k * (radix - 1) + r - 1) + 1];
        /* twiddle[] holds sin of a negative angle: forward (sign −1) uses it as is, the inverse its conjugate */
        const double *xr[FFT_MAX_RADIX], *xi[FFT_MAX_RADIX];
        double *yr[FFT_MAX_RADIX], *yi[FFT_MAX_RADIX];
        for (int r = 0; r < radix; r++) {
            xr[r] = sr + (int64_t)(j + r * quarter) * ld, xi[r] = si + (int64_t)(j + r * quarter) * ld;
            yr[r] = dr + (dst + (int64_t)r * ns) * ld, yi[r] = di + (dst + (int64_t)r * ns) * ld;
        }
        if (radix == 2) {
            const double w1r = wr[1], w1i = wi[1];
            LESMD_IVDEP
            for (int64_t c = c0; c < c1; c++) {
                const double ar = xr[0][c], ai = xi[0][c];
                const double br = xr[1][c] * w1r - xi[1][c] * w1i, bi = xr[1][c] * w1i + xi[1][c] * w1r;
                yr[0][c] = ar + br, yi[0][c] = ai + bi;
                yr[1][c] = ar - br, yi[1][c] = ai - bi;
            }
        } else if (radix == 4) {
            const double w1r = wr[1], w1i = wi[1], w2r = wr[2], w2i = wi[2], w3r = wr[3], w3i = wi[3];
            LESMD_IVDEP
            for (int64_t c = c0; c < c1; c++) {
                const double x0r = xr[0][c], x0i = xi[0][c];
                const double x1r = xr[1][c] * w1r - xi[1][c] * w1i, x1i = xr[1][c] * w1i + xi[1][c] * w1r;
                const double x2r = xr[2][c] * w2r - xi[2][c] * w2i, x2i = xr[2][c] * w2i + xi[2][c] * w2r;
                const double x3r = xr[3][c] * w3r - xi[3][c] * w3i, x3i = xr[3][c] * w3i + xi[3][c] * w3r;
                const double ar = x0r + x2r, ai = x0i + x2i, br = x0r - x2r, bi = x0i - x2i;
                const double cr = x1r + x3r, ci = x1i + x3i, dr_ = x1r - x3r, di_ = x1i - x3i;
                /* X1 = b + sign·i·d, X3 = b − sign·i·d */
                yr[0][c] = ar + cr, yi[0][c] = ai + ci;
                yr[2][c] = ar - cr, yi[2][c] = ai - ci;
                yr[1][c] = br - sign * di_, yi[1][c] = bi + sign * dr_;
                yr[3][c] = br + sign * di_, yi[3][c] = bi - sign * dr_;
            }
        } else if (radix == 8) {
            /* two 4-point DFTs (even and odd inputs) combined with the roots W = e^(sign 2πi k/8) */
            const double h = 0.70710678118654752440;
            LESMD_IVDEP
            for (int64_t c = c0; c < c1; c++) {
                double vr[8], vi[8];
                for (int r = 0; r < 8; r++)
                    vr[r] = xr[r][c] * wr[r] - xi[r][c] * wi[r], vi[r] = xr[r][c] * wi[r] + xi[r][c] * wr[r];
                double er[4], ei[4], or_[4], oi[4];
                for (int half = 0; half < 2; half++) {
                    const double *pr = vr + half, *pi = vi + half;
                    double *outr = half ? or_ : er, *outi = half ? oi : ei;
                    const double ar = pr[0] + pr[4], ai = pi[0] + pi[4], br = pr[0] - pr[4], bi = pi[0] - pi[4];
                    const double cr = pr[2] + pr[6], ci = pi[2] + pi[6], dr_ = pr[2] - pr[6], di_ = pi[2] - pi[6];
                    outr[0] = ar + cr, outi[0] = ai + ci;
                    outr[2] = ar - cr, outi[2] = ai - ci;
                    outr[1] = br - sign * di_, outi[1] = bi + sign * dr_;
                    outr[3] = br + sign * di_, outi[3] = bi - sign * dr_;
                }
                /* odd half times W^k: W^1 = h(1 + sign i), W^2 = sign i, W^3 = h(−1 + sign i) */
                const double t1r = h * (or_[1] - sign * oi[1]), t1i = h * (oi[1] + sign * or_[1]);
                const double t2r = -sign * oi[2], t2i = sign * or_[2];
                const double t3r = -h * (or_[3] + sign * oi[3]), t3i = h * (sign * or_[3] - oi[3]);
                yr[0][c] = er[0] + or_[0], yi[0][c] = ei[0] + oi[0];
                yr[4][c] = er[0] - or_[0], yi[4][c] = ei[0] - oi[0];
                yr[1][c] = er[1] + t1r, yi[1][c] = ei[1] + t1i;
                yr[5][c] = er[1] - t1r, yi[5][c] = ei[1] - t1i;
                yr[2][c] = er[2] + t2r, yi[2][c] = ei[2] + t2i;
                yr[6][c] = er[2] - t2r, yi[6][c] = ei[2] - t2i;
                yr[3][c] = er[3] + t3r, yi[3][c] = ei[3] + t3i;
                yr[7][c] = er[3] - t3r, yi[7][c] = ei[3] - t3i;
            }
        } else if (radix == 3) {
            const double w1r = wr[1], w1i = wi[1], w2r = wr[2], w2i = wi[2];
            const double s1 = -sign * 0.86602540378443864676; /* X1 = mid − s1·i·dif with s1 = ∓sin(2π/3)·… */
            LESMD_IVDEP
            for (int64_t c = c0; c < c1; c++) {
                const double x0r = xr[0][c], x0i = xi[0][c];
                const double x1r = xr[1][c] * w1r - xi[1][c] * w1i, x1i = xr[1][c] * w1i + xi[1][c] * w1r;
                const double x2r = xr[2][c] * w2r - xi[2][c] * w2i, x2i = xr[2][c] * w2i + xi[2][c] * w2r;
                const double sr_ = x1r + x2r, si_ = x1i + x2i, dr_ = x1r - x2r, di_ = x1i - x2i;
                const double mr = x0r - 0.5 * sr_, mi = x0i - 0.5 * si_;
                yr[0][c] = x0r + sr_, yi[0][c] = x0i + si_;
                yr[1][c] = mr + s1 * di_, yi[1][c] = mi - s1 * dr_;
                yr[2][c] = mr - s1 * di_, yi[2][c] = mi + s1 * dr_;
            }
        } else {
            /* plain R-point DFT (radix 5 and other primes), roots e^(sign 2πi qk/R) */
            double cr[FFT_MAX_RADIX], ci[FFT_MAX_RADIX];
            for (int q = 0; q < radix; q++) {
                const double angle = sign * 2.0 * M_PI * (double)q / (double)radix;
                cr[q] = cos(angle), ci[q] = sin(angle);
            }
            LESMD_IVDEP
            for (int64_t c = c0; c < c1; c++) {
                double vr[FFT_MAX_RADIX], vi[FFT_MAX_RADIX];
                for (int r = 0; r < radix; r++)
                    vr[r] = xr[r][c] * wr[r] - xi[r][c] * wi[r], vi[r] = xr[r][c] * wi[r] + xi[r][c] * wr[r];
                for (int q = 0; q < radix; q++) {
                    double accr = 0.0, acci = 0.0;
                    for (int r = 0; r < radix; r++) {
                        const int e = (q * r) % radix;
                        accr += vr[r] * cr[e] - vi[r] * ci[e], acci += vr[r] * ci[e] + vi[r] * cr[e];
                    }
                    yr[q][c] = accr, yi[q][c] = acci;
                }
            }
        }
    }
}

/* Batched transform along the rows of (re, im) [n][ld], columns [c0, c1), using (wre, wim) of the same shape as
   work space; the result is left in (re, im). */
static void fft_rows(double *re, double *im, double *wre, double *wim, const FftPlan *plan, int64_t ld, int64_t c0,
                     int64_t c1, int inverse) {
    double *sr = re, *si = im, *dr = wre, *di = wim;
    const double sign = inverse ? 1.0 : -1.0;
    for (int s = 0; s < plan->n_stages; s++) {
        fft_stage_rows(sr, si, dr, di, plan->n, plan->radix[s], plan->span[s], plan->twiddle + 2 * plan->offset[s],
                       ld, c0, c1, sign);
        double *t = sr;
        sr = dr, dr = t;
        t = si, si = di, di = t;
    }
    if (sr != re)
        for (int64_t row = 0; row < plan->n; row++) {
            memcpy(re + row * ld + c0, sr + row * ld + c0, sizeof(double) * (size_t)(c1 - c0));
            memcpy(im + row * ld + c0, si + row * ld + c0, sizeof(double) * (size_t)(c1 - c0));
        }
}

/* The half spectrum: real and imaginary planes [K1][K2][K3/2+1] (hr, hi), with work planes of the same size. The
   last axis uses a pair buffer: rows K3, columns = pairs of real lines (zr, zi) and its work (zwr, zwi). */
typedef struct {
    const int64_t *shape;
    const FftPlan *plans;
    double *hr, *hi, *wr, *wi, *zr, *zi, *zwr, *zwi;
    const void *real_in;
    void *real_out;
    int64_t first, last; /* columns (pairs of lines for the last axis; planes k1 for the second) */
    int stage, inverse, is_double;
} FftJob;

static inline double fft_load(const void *p, int64_t k, int is_double) {
    return is_double ? ((const double *)p)[k] : (double)((const float *)p)[k];
}

/* Last axis, forward: lines 2t, 2t+1 (of K1·K2) → one complex column t; transformed; separated into two half
   spectra (A = (Z_k + conj Z_−k)/2, B = (Z_k − conj Z_−k)/(2i)). */
static void last_axis_forward(const FftJob *job) {
    const int64_t n = job->shape[2], half = n / 2 + 1, lines = job->shape[0] * job->shape[1];
    const int64_t pairs = (lines + 1) / 2;
    for (int64_t t = job->first; t < job->last; t++) {
        const int64_t a = 2 * t, b = 2 * t + 1;
        for (int64_t k = 0; k < n; k++) {
            job->zr[k * pairs + t] = fft_load(job->real_in, a * n + k, job->is_double);
            job->zi[k * pairs + t] = b < lines ? fft_load(job->real_in, b * n + k, job->is_double) : 0.0;
        }
    }
    fft_rows(job->zr, job->zi, job->zwr, job->zwi, &job->plans[2], pairs, job->first, job->last, 0);
    for (int64_t k = 0; k < half; k++) {
        const double *zkr = job->zr + k * pairs, *zki = job->zi + k * pairs;
        const double *zmr = job->zr + ((n - k) % n) * pairs, *zmi = job->zi + ((n - k) % n) * pairs;
        for (int64_t t = job->first; t < job->last; t++) {
            const int64_t a = 2 * t, b = 2 * t + 1;
            job->hr[a * half + k] = 0.5 * (zkr[t] + zmr[t]), job->hi[a * half + k] = 0.5 * (zki[t] - zmi[t]);
            if (b < lines)
                job->hr[b * half + k] = 0.5 * (zki[t] + zmi[t]), job->hi[b * half + k] = -0.5 * (zkr[t] - zmr[t]);
        }
    }
}

/* Last axis, inverse: the half spectra A (line 2t) and B (line 2t+1), imaginary parts at m3 = 0 and K3/2
   ignored, → Z = A + iB over the full axis → transformed → x = Re Z, y = Im Z, scaled by 1/(K1 K2 K3). */
static void last_axis_inverse(const FftJob *job) {
    const int64_t n = job->shape[2], half = n / 2 + 1, lines = job->shape[0] * job->shape[1];
    const int64_t pairs = (lines + 1) / 2;
    const double scale = 1.0 / ((double)job->shape[0] * (double)job->shape[1] * (double)n);
    for (int64_t k = 0; k < half; k++) {
        const int edge = k == 0 || 2 * k == n;
        double *zkr = job->zr + k * pairs, *zki = job->zi + k * pairs;
        double *zmr = job->zr + ((n - k) % n) * pairs, *zmi = job->zi + ((n - k) % n) * pairs;
        for (int64_t t = job->first; t < job->last; t++) {
            const int64_t a = 2 * t, b = 2 * t + 1;
            const double ar = job->hr[a * half + k], ai = edge ? 0.0 : job->hi[a * half + k];
            const double br = b < lines ? job->hr[b * half + k] : 0.0;
            const double bi = b < lines && !edge ? job->hi[b * half + k] : 0.0;
            zkr[t] = ar - bi, zki[t] = ai + br; /* Z_k = A + iB */
            if (!edge) zmr[t] = ar + bi, zmi[t] = br - ai; /* Z_−k = conj A + i conj B */
        }
    }
    fft_rows(job->zr, job->zi, job->zwr, job->zwi, &job->plans[2], pairs, job->first, job->last, 1);
    for (int64_t t = job->first; t < job->last; t++) {
        const int64_t a = 2 * t, b = 2 * t + 1;
        for (int64_t k = 0; k < n; k++) {
            const double x = scale * job->zr[k * pairs + t], y = scale * job->zi[k * pairs + t];
            if (job->is_double) {
                ((double *)job->real_out)[a * n + k] = x;
                if (b < lines) ((double *)job->real_out)[b * n + k] = y;
            } else {
                ((float *)job->real_out)[a * n + k] = (float)x;
                if (b < lines) ((float *)job->real_out)[b * n + k] = (float)y;
            }
        }
    }
}

static void *fft_job(void *arg) {
    const FftJob *job = (const FftJob *)arg;
    const int64_t half = job->shape[2] / 2 + 1, plane = job->shape[1] * half;
    if (job->stage == 2) {
        (job->inverse ? last_axis_inverse : last_axis_forward)(job);
    } else if (job->stage == 1) { /* second axis: plane k1 is (K2 rows) × (half columns) */
        for (int64_t k1 = job->first; k1 < job->last; k1++)
            fft_rows(job->hr + k1 * plane, job->hi + k1 * plane, job->wr + k1 * plane, job->wi + k1 * plane,
                     &job->plans[1], half, 0, half, job->inverse);
    } else { /* first axis: K1 rows of K2·half columns */
        fft_rows(job->hr, job->hi, job->wr, job->wi, &job->plans[0], plane, job->first, job->last, job->inverse);
    }
    return NULL;
}

static void fft_run(FftJob base, int stage, int64_t n_columns, int64_t n_threads) {
    FftJob jobs[64];
    if (n_threads > n_columns) n_threads = n_columns;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    for (int64_t t = 0; t < n_threads; t++) {
        jobs[t] = base;
        jobs[t].stage = stage;
        jobs[t].first = n_columns * t / n_threads, jobs[t].last = n_columns * (t + 1) / n_threads;
    }
    run_jobs(jobs, n_threads, sizeof(FftJob), fft_job);
}

/* Work space of fft3d_forward/inverse: doubles for the half spectrum, its work copy and the last-axis buffers. */
static int64_t fft3d_work_size(const int64_t shape[3]) {
    const int64_t half = shape[2] / 2 + 1, pairs = (shape[0] * shape[1] + 1) / 2;
    return 2 * shape[0] * shape[1] * half + 4 * shape[2] * pairs;
}

static int fft3d_plans(FftPlan plans[3], const int64_t shape[3]) {
    for (int d = 0; d < 3; d++) {
        const int status = fft_plan_init(&plans[d], (int)shape[d]);
        if (status != 0) {
            for (int e = 0; e < d; e++) fft_plan_free(&plans[e]);
            return status;
        }
    }
    return 0;
}

static FftJob fft3d_job(const int64_t shape[3], const FftPlan plans[3], double *hr, double *hi, double *work) {
    const int64_t size = shape[0] * shape[1] * (shape[2] / 2 + 1), pairs = (shape[0] * shape[1] + 1) / 2;
    FftJob job = {shape, plans, hr, hi, work, work + size, work + 2 * size, work + 2 * size + shape[2] * pairs,
                  work + 2 * size + 2 * shape[2] * pairs, work + 2 * size + 3 * shape[2] * pairs,
                  NULL, NULL, 0, 0, 0, 0, 0};
    return job;
}

/* Forward: real (K1, K2, K3) → half spectrum planes hr, hi (K1, K2, K3/2+1). work: fft3d_work_size doubles (hr, hi
   may not lie in it). Returns 0; 1 for a size with a prime factor beyond FFT_MAX_RADIX, 2 out of memory. */
static int fft3d_forward(const void *real, const int64_t shape[3], double *hr, double *hi, double *work,
                         int is_double, int64_t n_threads) {
    FftPlan plans[3];
    const int status = fft3d_plans(plans, shape);
    if (status != 0) return status;
    const int64_t half = shape[2] / 2 + 1;
    FftJob base = fft3d_job(shape, plans, hr, hi, work);
    base.real_in = real, base.is_double = is_double;
    fft_run(base, 2, (shape[0] * shape[1] + 1) / 2, n_threads);
    fft_run(base, 1, shape[0], n_threads);
    fft_run(base, 0, shape[1] * half, n_threads);
    for (int d = 0; d < 3; d++) fft_plan_free(&plans[d]);
    return 0;
}

/* Inverse: half spectrum planes hr, hi (overwritten) → real (K1, K2, K3), scaled by 1/(K1 K2 K3). */
static int fft3d_inverse(double *hr, double *hi, const int64_t shape[3], void *real, double *work, int is_double,
                         int64_t n_threads) {
    FftPlan plans[3];
    const int status = fft3d_plans(plans, shape);
    if (status != 0) return status;
    const int64_t half = shape[2] / 2 + 1;
    FftJob base = fft3d_job(shape, plans, hr, hi, work);
    base.real_out = real, base.is_double = is_double, base.inverse = 1;
    fft_run(base, 0, shape[1] * half, n_threads);
    fft_run(base, 1, shape[0], n_threads);
    fft_run(base, 2, (shape[0] * shape[1] + 1) / 2, n_threads);
    for (int d = 0; d < 3; d++) fft_plan_free(&plans[d]);
    return 0;
}
