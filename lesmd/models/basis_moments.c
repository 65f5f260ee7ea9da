/* Basis moments of the moment descriptor (lesmd/models/descriptors.py), forward and backward, in plain C.
 *
 *   G[c, i, (b, z, n)] = Σ_{j ∈ N(i), Z_j = z} Y_c(u_ij) B_n(r_ij)     (b: block of the centre's element)
 *
 * with the Bessel basis B_n(r) = sqrt(2/r_c) sin(nπr/r_c)/r · f_c(r), the envelope
 * f_c = 1 − 28x⁶ + 48x⁷ − 21x⁸ (x = r/r_c), and the stored components Y_c of u^{⊗L}, L ≤ 3, in the order of
 * descriptors.angular_products. The backward maps dE/dG to dE/dv for every edge vector v = r_j − r_i + shift.
 *
 * Edges are sorted by centre: the edges of atom i are offsets[i] .. offsets[i+1]−1. Per-edge arithmetic is in
 * double precision; inputs and outputs are float or double (suffix f32 / f64). Atoms are split over threads
 * (native_parallel.h); every atom writes only its own row of G and its own edges' gradients, so there are no races.
 * The torch implementation in descriptors.py is the reference; tests compare both.
 */
#define _GNU_SOURCE /* dladdr, see native_parallel.h */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../native_parallel.h"

#define MAX_BASIS 32
#define MAX_SPECIES 16
#define N_COMP 20 /* components of u^{⊗L}, L = 0..3 */

static const int N_COMPONENTS_UP_TO[4] = {1, 4, 10, 20};

typedef struct {
    double r, u[3];
    double basis[MAX_BASIS], dbasis[MAX_BASIS];
    double y[N_COMP];
} Edge;

/* r, u, B_n(r) and (when wanted) dB_n/dr of one edge vector; returns 0 for r ≥ r_c or r = 0 (no contribution). */
static inline int edge_terms(const double v[3], double cutoff, int n_basis, int want_derivative, Edge *e) {
    double r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    if (!(r2 < cutoff * cutoff) || r2 == 0.0) return 0;
    double r = sqrt(r2), inv_r = 1.0 / r, inv_cutoff = 1.0 / cutoff;
    e->r = r;
    for (int a = 0; a < 3; a++) e->u[a] = v[a] * inv_r;
    double x = r * inv_cutoff, x2 = x * x, x5 = x2 * x2 * x, x6 = x5 * x, x7 = x6 * x;
    double env = 1.0 - 28.0 * x6 + 48.0 * x7 - 21.0 * x7 * x;
    double theta = M_PI * x, c1 = cos(theta), s1 = sin(theta);
    double scale = sqrt(2.0 * inv_cutoff) * inv_r; /* sqrt(2/r_c)/r */
    double s_prev = 0.0, s = s1; /* sin(nθ) by the Chebyshev recurrence */
    if (!want_derivative) {
        double radial = scale * env;
        for (int n = 0; n < n_basis; n++) {
            e->basis[n] = radial * s;
            double s_next = 2.0 * c1 * s - s_prev;
            s_prev = s, s = s_next;
        }
        return 1;
    }
    double denv = (-168.0 * x5 + 336.0 * x6 - 168.0 * x7) * inv_cutoff;
    /* dB_n/dr = scale [(nπ/r_c) cos(nθ) env + sin(nθ) (env' − env/r)] */
    double c_prev = 1.0, c = c1, k = M_PI * inv_cutoff * env, d = denv - env * inv_r;
    for (int n = 1; n <= n_basis; n++) {
        e->basis[n - 1] = scale * env * s;
        e->dbasis[n - 1] = scale * (n * k * c + d * s);
        double s_next = 2.0 * c1 * s - s_prev, c_next = 2.0 * c1 * c - c_prev;
        s_prev = s, s = s_next, c_prev = c, c = c_next;
    }
    return 1;
}

/* Stored components of u^{⊗L}, L ≤ 3 (weights √multiplicity), as in descriptors.angular_products. */
static void angular(const double u[3], double *y) {
    const double r2 = sqrt(2.0), r3 = sqrt(3.0), r6 = sqrt(6.0);
    double x = u[0], yy_ = u[1], z = u[2];
    double xx = x * x, yy = yy_ * yy_, zz = z * z;
    y[0] = 1.0;
    y[1] = x, y[2] = yy_, y[3] = z;
    y[4] = xx, y[5] = yy, y[6] = zz, y[7] = r2 * x * yy_, y[8] = r2 * x * z, y[9] = r2 * yy_ * z;
    y[10] = xx * x, y[11] = yy * yy_, y[12] = zz * z;
    y[13] = r3 * xx * yy_, y[14] = r3 * xx * z, y[15] = r3 * yy * x, y[16] = r3 * yy * z;
    y[17] = r3 * zz * x, y[18] = r3 * zz * yy_, y[19] = r6 * x * yy_ * z;
}

/* g_u = Σ_c gy[c] ∂Y_c/∂u for the first n_comp components. */
static void angular_vjp(const double u[3], const double *gy, int n_comp, double gu[3]) {
    const double r2 = sqrt(2.0), r3 = sqrt(3.0), r6 = sqrt(6.0);
    double x = u[0], y = u[1], z = u[2];
    gu[0] = gu[1] = gu[2] = 0.0;
    if (n_comp > 1) {
        gu[0] += gy[1], gu[1] += gy[2], gu[2] += gy[3];
    }
    if (n_comp > 4) {
        gu[0] += 2.0 * x * gy[4] + r2 * (y * gy[7] + z * gy[8]);
        gu[1] += 2.0 * y * gy[5] + r2 * (x * gy[7] + z * gy[9]);
        gu[2] += 2.0 * z * gy[6] + r2 * (x * gy[8] + y * gy[9]);
    }
    if (n_comp > 10) {
        gu[0] += 3.0 * x * x * gy[10] + r3 * (2.0 * x * y * gy[13] + 2.0 * x * z * gy[14] + y * y * gy[15]
                                              + z * z * gy[17]) + r6 * y * z * gy[19];
        gu[1] += 3.0 * y * y * gy[11] + r3 * (x * x * gy[13] + 2.0 * x * y * gy[15] + 2.0 * y * z * gy[16]
                                              + z * z * gy[18]) + r6 * x * z * gy[19];
        gu[2] += 3.0 * z * z * gy[12] + r3 * (x * x * gy[14] + y * y * gy[16] + 2.0 * x * z * gy[17]
                                              + 2.0 * y * z * gy[18]) + r6 * x * y * gy[19];
    }
}

typedef struct {
    const void *vectors, *grad_out;
    void *out;
    const int64_t *offsets, *neighbor_species, *centre_block;
    int64_t n_atoms, n_species, n_blocks, n_basis, l_max, first, last;
    double cutoff;
    int is_double;
    int status; /* set by a worker: 2 = out of memory */
} Job;

static inline double load(const void *p, int64_t k, int is_double) {
    return is_double ? ((const double *)p)[k] : (double)((const float *)p)[k];
}

static inline void store(void *p, int64_t k, double value, int is_double) {
    if (is_double) ((double *)p)[k] = value;
    else ((float *)p)[k] = (float)value;
}

/* G rows of atoms first..last−1 (out is zero-initialised by the caller).

   Per atom, the edge terms are first tabulated: Y (m × N_COMP) and the basis placed in its neighbour's element
   block, B (m × width, zero elsewhere, width padded to a multiple of TILE). G = Yᵀ B is then a small matrix product
   whose 2 × TILE output tiles stay in registers over the edge loop. Always inlined into forward_range, so that the
   common basis size is a compile-time constant. */
#define TILE 16
static inline __attribute__((always_inline)) void forward_impl(const Job *job, const int nb) {
    const int n_comp = N_COMPONENTS_UP_TO[job->l_max];
    const int64_t width = job->n_species * nb, row = job->n_blocks * width;
    const int64_t padded = (width + TILE - 1) / TILE * TILE;
    int64_t most = 0;
    for (int64_t i = job->first; i < job->last; i++)
        if (job->offsets[i + 1] - job->offsets[i] > most) most = job->offsets[i + 1] - job->offsets[i];
    double *y = malloc(sizeof(double) * (most + 1) * N_COMP), *b = malloc(sizeof(double) * (most + 1) * padded);
    if (y == NULL || b == NULL) {
        free(y), free(b);
        ((Job *)job)->status = 2;
        return;
    }
    Edge e;
    for (int64_t i = job->first; i < job->last; i++) {
        int64_t m = 0;
        for (int64_t k = job->offsets[i]; k < job->offsets[i + 1]; k++) {
            double v[3] = {load(job->vectors, 3 * k, job->is_double), load(job->vectors, 3 * k + 1, job->is_double),
                           load(job->vectors, 3 * k + 2, job->is_double)};
            if (!edge_terms(v, job->cutoff, nb, 0, &e)) continue;
            angular(e.u, y + m * N_COMP);
            double *bm = b + m * padded;
            memset(bm, 0, sizeof(double) * padded);
            memcpy(bm + job->neighbor_species[k] * nb, e.basis, sizeof(double) * nb);
            m++;
        }
        int64_t base = i * row + job->centre_block[i] * width;
        for (int c0 = 0; c0 < n_comp; c0 += 2) {
            for (int64_t f0 = 0; f0 < padded; f0 += TILE) {
                double t0[TILE] = {0.0}, t1[TILE] = {0.0};
                for (int64_t r = 0; r < m; r++) {
                    const double *br = b + r * padded + f0;
                    double y0 = y[r * N_COMP + c0], y1 = y[r * N_COMP + c0 + 1];
                    for (int f = 0; f < TILE; f++) t0[f] += y0 * br[f];
                    for (int f = 0; f < TILE; f++) t1[f] += y1 * br[f];
                }
                for (int f = 0; f < TILE && f0 + f < width; f++) {
                    store(job->out, c0 * job->n_atoms * row + base + f0 + f, t0[f], job->is_double);
                    if (c0 + 1 < n_comp)
                        store(job->out, (c0 + 1) * job->n_atoms * row + base + f0 + f, t1[f], job->is_double);
                }
            }
        }
    }
    free(y), free(b);
}

static void *forward_range(void *arg) {
    const Job *job = (const Job *)arg;
    if (job->n_basis == 8) forward_impl(job, 8);
    else forward_impl(job, (int)job->n_basis);
    return NULL;
}

/* dE/dv of the edges of atoms first..last−1 from dE/dG (grad_out, same layout as G); inlined like forward_impl. */
static inline __attribute__((always_inline)) void backward_impl(const Job *job, const int nb) {
    const int n_comp = N_COMPONENTS_UP_TO[job->l_max];
    const int64_t width = job->n_species * nb, row = job->n_blocks * width;
    /* the atom's dE/dG in both layouts: [c][(z, n)] (sums over c run along n) and [(z, n)][c] (sums over n run
       along c); every reduction is then a vertical vector operation */
    double grad[N_COMP * MAX_SPECIES * MAX_BASIS], grad_t[MAX_SPECIES * MAX_BASIS * N_COMP];
    Edge e;
    if (n_comp < N_COMP) memset(grad_t, 0, sizeof grad_t);
    for (int64_t i = job->first; i < job->last; i++) {
        int64_t base = i * row + job->centre_block[i] * width;
        for (int c = 0; c < n_comp; c++)
            for (int64_t f = 0; f < width; f++) {
                double value = load(job->grad_out, c * job->n_atoms * row + base + f, job->is_double);
                grad[c * width + f] = value;
                grad_t[f * N_COMP + c] = value;
            }
        for (int64_t k = job->offsets[i]; k < job->offsets[i + 1]; k++) {
            double v[3] = {load(job->vectors, 3 * k, job->is_double), load(job->vectors, 3 * k + 1, job->is_double),
                           load(job->vectors, 3 * k + 2, job->is_double)};
            double dv[3] = {0.0, 0.0, 0.0};
            if (edge_terms(v, job->cutoff, nb, 1, &e)) {
                angular(e.u, e.y);
                const int64_t z0 = job->neighbor_species[k] * nb;
                double gy[N_COMP] = {0.0}, gb[MAX_BASIS] = {0.0};
                for (int n = 0; n < nb; n++) { /* gy_c = Σ_n dG[c, (z, n)] B_n */
                    const double *src = grad_t + (z0 + n) * N_COMP;
                    double b = e.basis[n];
                    for (int c = 0; c < N_COMP; c++) gy[c] += src[c] * b;
                }
                for (int c = 0; c < n_comp; c++) { /* gb_n = Σ_c dG[c, (z, n)] Y_c */
                    const double *src = grad + c * width + z0;
                    double y = e.y[c];
                    for (int n = 0; n < nb; n++) gb[n] += src[n] * y;
                }
                double gu[3], gr = 0.0;
                angular_vjp(e.u, gy, n_comp, gu);
                for (int n = 0; n < nb; n++) gr += gb[n] * e.dbasis[n];
                double radial = gu[0] * e.u[0] + gu[1] * e.u[1] + gu[2] * e.u[2];
                double inv_r = 1.0 / e.r;
                for (int a = 0; a < 3; a++) dv[a] = (gu[a] - radial * e.u[a]) * inv_r + gr * e.u[a];
            }
            for (int a = 0; a < 3; a++) store(job->out, 3 * k + a, dv[a], job->is_double);
        }
    }
}

static void *backward_range(void *arg) {
    const Job *job = (const Job *)arg;
    if (job->n_basis == 8) backward_impl(job, 8);
    else backward_impl(job, (int)job->n_basis);
    return NULL;
}

/* Split atoms into n_threads ranges of about equal edge counts and run worker on each. */
static int run_split(Job job, int64_t n_threads, void *(*worker)(void *)) {
    int64_t n_edges = job.offsets[job.n_atoms];
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    if (n_threads == 1 || job.n_atoms < 2) {
        job.first = 0, job.last = job.n_atoms;
        worker(&job);
        return job.status;
    }
    Job jobs[64];
    int64_t atom = 0;
    for (int64_t t = 0; t < n_threads; t++) {
        jobs[t] = job;
        jobs[t].first = atom;
        int64_t target = n_edges * (t + 1) / n_threads;
        while (atom < job.n_atoms && (t == n_threads - 1 || job.offsets[atom] < target)) atom++;
        jobs[t].last = atom;
    }
    run_jobs(jobs, n_threads, sizeof(Job), worker);
    int status = 0;
    for (int64_t t = 0; t < n_threads; t++)
        if (jobs[t].status > status) status = jobs[t].status;
    return status;
}

static int check(int64_t n_species, int64_t n_basis, int64_t l_max) {
    return n_species >= 1 && n_species <= MAX_SPECIES && n_basis >= 1 && n_basis <= MAX_BASIS && l_max >= 0
           && l_max <= 3;
}

/* Return 0 on success, 1 for sizes beyond the compiled limits, 2 when work buffers cannot be allocated. */
int basis_moments_forward(const void *vectors, const int64_t *offsets, const int64_t *neighbor_species,
                          const int64_t *centre_block, int64_t n_atoms, int64_t n_species, int64_t n_blocks,
                          int64_t n_basis, int64_t l_max, double cutoff, void *out, int is_double, int64_t n_threads) {
    if (!check(n_species, n_basis, l_max)) return 1;
    Job job = {vectors, NULL, out, offsets, neighbor_species, centre_block, n_atoms, n_species, n_blocks,
               n_basis, l_max, 0, n_atoms, cutoff, is_double};
    return run_split(job, n_threads, forward_range);
}

int basis_moments_backward(const void *grad_out, const void *vectors, const int64_t *offsets,
                           const int64_t *neighbor_species, const int64_t *centre_block, int64_t n_atoms,
                           int64_t n_species, int64_t n_blocks, int64_t n_basis, int64_t l_max, double cutoff,
                           void *grad_vectors, int is_double, int64_t n_threads) {
    if (!check(n_species, n_basis, l_max)) return 1;
    Job job = {vectors, grad_out, grad_vectors, offsets, neighbor_species, centre_block, n_atoms, n_species,
               n_blocks, n_basis, l_max, 0, n_atoms, cutoff, is_double};
    return run_split(job, n_threads, backward_range);
}
