/* Charge spreading of smooth PME (lesmd/les/mesh.py) and its adjoint, in plain C.
 *
 *   Q[k0, k1, k2] = Σ_i q_i Π_d M_p(u_id − k_d)   (periodic in k_d mod K_d)
 *
 * u: (N, 3) scaled fractional coordinates (K_d times the fractional coordinate), q: (N,) charges. With
 * u = floor(u) + t, the B-spline weight of mesh point floor(u_d) − j is M_p(t + j) = Σ_k C[j, k] t^k (C: the
 * (p, p) coefficient matrix of mesh._bspline_coefficients). The backward maps dE/dQ to dE/dq_i and dE/du_i.
 *
 * Per-atom arithmetic is in double precision; inputs and outputs are float or double. Both split atoms over threads
 * (native_parallel.h); in the forward, where atoms share mesh points, each thread spreads onto its own copy of the
 * mesh and the copies are added. mesh.py's torch version is the reference; tests compare both.
 */
#define _GNU_SOURCE /* dladdr, see native_parallel.h */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../native_parallel.h"

#define MAX_ORDER 12

static inline double load(const void *p, int64_t k, int is_double) {
    return is_double ? ((const double *)p)[k] : (double)((const float *)p)[k];
}

/* The coefficient matrix transposed for Horner's scheme across the p weights at once: ct[k][j] = C[j, k] and, for
   the derivatives, dt[k][j] = (k + 1) C[j, k + 1]. */
typedef struct {
    double ct[MAX_ORDER][MAX_ORDER], dt[MAX_ORDER][MAX_ORDER];
} Tables;

static void make_tables(const double *coefficients, int p, Tables *tables) {
    for (int k = 0; k < p; k++)
        for (int j = 0; j < p; j++) {
            tables->ct[k][j] = coefficients[j * p + k];
            tables->dt[k][j] = k + 1 < p ? (k + 1) * coefficients[j * p + k + 1] : 0.0;
        }
}

/* Weights w[d][j] (and derivatives dw[d][j] = d/du when dw != NULL) and the wrapped mesh indices idx[d][j] of
   the points floor(u_d) − j, for one atom: w_j = Σ_k C[j, k] t^k by Horner's scheme, all j together
   (vectorised). Inlined with a constant p for the common orders. */
static inline __attribute__((always_inline)) void atom_weights(
    const double u[3], const int64_t shape[3], const int p, const Tables *tables, double w[3][MAX_ORDER],
    double dw[3][MAX_ORDER], int64_t idx[3][MAX_ORDER]) {
    for (int d = 0; d < 3; d++) {
        const double base = floor(u[d]), t = u[d] - base;
        for (int j = 0; j < p; j++) w[d][j] = tables->ct[p - 1][j];
        for (int k = p - 2; k >= 0; k--)
            for (int j = 0; j < p; j++) w[d][j] = w[d][j] * t + tables->ct[k][j];
        if (dw != NULL) {
            for (int j = 0; j < p; j++) dw[d][j] = tables->dt[p - 2][j];
            for (int k = p - 3; k >= 0; k--)
                for (int j = 0; j < p; j++) dw[d][j] = dw[d][j] * t + tables->dt[k][j];
        }
        int64_t b = ((int64_t)base) % shape[d];
        if (b < 0) b += shape[d];
        for (int j = 0; j < p; j++) {
            const int64_t m = b - j;
            idx[d][j] = m < 0 ? m + shape[d] : m;
        }
    }
}

/* When the p points of the last axis do not wrap (idx[j] = idx[0] − j, the usual case), their first index, with
   wz[c] the weight of point first + c; else −1. */
static inline int64_t z_run(const int64_t idx[MAX_ORDER], const double w[MAX_ORDER], int p, double wz[MAX_ORDER]) {
    if (idx[0] - idx[p - 1] != p - 1) return -1;
    for (int c = 0; c < p; c++) wz[c] = w[p - 1 - c];
    return idx[p - 1];
}

/* |u| beyond this (mesh units) is refused: floor(u) must fit an int64 */
#define MAX_U 1e15

/* Atom i's scaled coordinates (into u_i) and charge (into q); 0 when u_i is NaN, inf or beyond ±MAX_U (the atom
   cannot be placed on the mesh), else 1. */
static inline int load_atom(const void *u, const void *charges, int64_t i, int is_double, double u_i[3], double *q) {
    for (int d = 0; d < 3; d++) u_i[d] = load(u, 3 * i + d, is_double);
    *q = load(charges, i, is_double);
    return fabs(u_i[0]) < MAX_U && fabs(u_i[1]) < MAX_U && fabs(u_i[2]) < MAX_U; /* NaN fails too */
}

/* One thread's share of the forward: Q (K0·K1·K2) += Σ_i q_i Π_d w over its atoms. */
typedef struct {
    const void *charges, *u;
    void *mesh;
    const int64_t *shape;
    const double *coefficients;
    int64_t first, last;
    int order, is_double;
    int bad; /* set when an atom's u is NaN, inf or beyond ±MAX_U (that atom is skipped) */
} SpreadJob;

/* mesh += q Π_d w over the p³ points of one atom at scaled coordinates u. Inlined with a constant p for the
   common order. */
static inline __attribute__((always_inline)) void spread_atom(void *mesh, const int64_t *shape, const int p,
                                                              const Tables *tables, const double u[3], double q,
                                                              int is_double) {
    double w[3][MAX_ORDER], wz[MAX_ORDER];
    int64_t idx[3][MAX_ORDER];
    if (p == 8)
        atom_weights(u, shape, 8, tables, w, NULL, idx);
    else
        atom_weights(u, shape, p, tables, w, NULL, idx);
    const int64_t z0 = z_run(idx[2], w[2], p, wz);
    for (int a = 0; a < p; a++) {
        const double qa = q * w[0][a];
        const int64_t row_a = idx[0][a] * shape[1];
        for (int b = 0; b < p; b++) {
            const double qab = qa * w[1][b];
            const int64_t row = (row_a + idx[1][b]) * shape[2];
            if (z0 >= 0) { /* the same sums, on p consecutive points: vectorised */
                if (is_double) {
                    double *dst = (double *)mesh + row + z0;
                    for (int c = 0; c < p; c++) dst[c] += qab * wz[c];
                } else {
                    float *dst = (float *)mesh + row + z0;
                    for (int c = 0; c < p; c++) dst[c] += (float)(qab * wz[c]);
                }
            } else if (is_double) {
                double *dst = (double *)mesh + row;
                for (int c = 0; c < p; c++) dst[idx[2][c]] += qab * w[2][c];
            } else {
                float *dst = (float *)mesh + row;
                for (int c = 0; c < p; c++) dst[idx[2][c]] += (float)(qab * w[2][c]);
            }
        }
    }
}

/* Spread atoms first .. last − 1 onto job->mesh (added to what is there). */
static void *spread_range(void *arg) {
    SpreadJob *job = (SpreadJob *)arg;
    const int p = job->order, is_double = job->is_double;
    const int64_t *shape = job->shape;
    Tables tables;
    make_tables(job->coefficients, p, &tables);
    for (int64_t i = job->first; i < job->last; i++) {
        double ui[3], q;
        if (!load_atom(job->u, job->charges, i, is_double, ui, &q)) {
            job->bad = 1;
            continue;
        }
        spread_atom(job->mesh, shape, p, &tables, ui, q, is_double);
    }
    return NULL;
}

typedef struct {
    void *mesh;
    void *const *parts;
    int64_t n_parts, first, last;
    int is_double;
} SumJob;

/* mesh[k] += Σ_t parts[t][k] for k in first .. last − 1. */
static void *sum_range(void *arg) {
    const SumJob *job = (const SumJob *)arg;
    for (int64_t t = 0; t < job->n_parts; t++) {
        if (job->is_double) {
            double *dst = (double *)job->mesh;
            const double *src = (const double *)job->parts[t];
            for (int64_t k = job->first; k < job->last; k++) dst[k] += src[k];
        } else {
            float *dst = (float *)job->mesh;
            const float *src = (const float *)job->parts[t];
            for (int64_t k = job->first; k < job->last; k++) dst[k] += src[k];
        }
    }
    return NULL;
}

/* mesh (zeroed by the caller) += the spread charges. With n_threads > 1 the atoms are split into n_threads
   ranges: the first is spread onto mesh, every other onto its own zeroed copy, and the copies are then added
   (atoms share mesh points, so threads cannot write to one mesh). Returns 0, 1 for an unsupported order, 2 when
   the copies cannot be allocated, 3 when a coordinate u is NaN, inf or beyond ±MAX_U (the mesh is then invalid). */
int mesh_spread_forward(const void *charges, const void *u, int64_t n_atoms, const int64_t *shape, int64_t order,
                        const double *coefficients, void *mesh, int is_double, int64_t n_threads) {
    if (order < 2 || order > MAX_ORDER) return 1;
    if (n_threads < 1 || n_atoms < 2) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    const int64_t n_mesh = shape[0] * shape[1] * shape[2];
    const size_t item = is_double ? sizeof(double) : sizeof(float);
    void *parts[64] = {mesh};
    for (int64_t t = 1; t < n_threads; t++) {
        parts[t] = calloc((size_t)n_mesh, item);
        if (parts[t] == NULL) {
            for (int64_t k = 1; k < t; k++) free(parts[k]);
            return 2;
        }
    }
    SpreadJob jobs[64];
    for (int64_t t = 0; t < n_threads; t++) {
        SpreadJob job = {charges, u, parts[t], shape, coefficients,
                         n_atoms * t / n_threads, n_atoms * (t + 1) / n_threads, (int)order, is_double, 0};
        jobs[t] = job;
    }
    run_jobs(jobs, n_threads, sizeof(SpreadJob), spread_range);
    int bad = 0;
    for (int64_t t = 0; t < n_threads; t++) bad |= jobs[t].bad;
    if (bad) {
        for (int64_t t = 1; t < n_threads; t++) free(parts[t]);
        return 3;
    }
    if (n_threads > 1) {
        SumJob sums[64];
        for (int64_t t = 0; t < n_threads; t++) {
            SumJob job = {mesh, parts + 1, n_threads - 1, n_mesh * t / n_threads, n_mesh * (t + 1) / n_threads,
                          is_double};
            sums[t] = job;
        }
        run_jobs(sums, n_threads, sizeof(SumJob), sum_range);
        for (int64_t t = 1; t < n_threads; t++) free(parts[t]);
    }
    return 0;
}

typedef struct {
    const void *charges, *u, *grad_mesh;
    void *grad_charges, *grad_u;
    const int64_t *shape;
    const double *coefficients;
    int64_t first, last;
    int order, is_double;
    int bad; /* as in SpreadJob: that atom's outputs are left unwritten */
} Job;

static inline void store(void *p, int64_t k, double value, int is_double) {
    if (is_double) ((double *)p)[k] = value;
    else ((float *)p)[k] = (float)value;
}

/* The gradient sums of one atom (weights from atom_weights): out = {Σ_k G_k Π_d w, Σ_k G_k dw_0 w_1 w_2,
   Σ_k G_k w_0 dw_1 w_2, Σ_k G_k w_0 w_1 dw_2}. Per plane a of the first axis, the sums over the second axis are
   taken first for all p points of the last axis at once (independent lanes: vectorised, no long dependency
   chain), then contracted with the last axis' weights. Inlined with a constant p for the common orders. */
static inline __attribute__((always_inline)) void gather_atom(
    const void *grad_mesh, const int64_t *shape, const int p, const double w[3][MAX_ORDER],
    const double dw[3][MAX_ORDER], const int64_t idx[3][MAX_ORDER], int is_double, double out[4]) {
    double wz[MAX_ORDER], dwz[MAX_ORDER];
    int64_t zidx[MAX_ORDER]; /* last-axis points in increasing order within the run, wz and dwz their weights */
    for (int c = 0; c < p; c++) zidx[c] = idx[2][p - 1 - c], wz[c] = w[2][p - 1 - c], dwz[c] = dw[2][p - 1 - c];
    const int contiguous = zidx[p - 1] - zidx[0] == p - 1;
    double sum = 0.0, d0 = 0.0, d1 = 0.0, d2 = 0.0;
    for (int a = 0; a < p; a++) {
        const int64_t row_a = idx[0][a] * shape[1];
        double tw[MAX_ORDER], tdw[MAX_ORDER]; /* Σ_b w1 G and Σ_b dw1 G per last-axis point */
        for (int c = 0; c < p; c++) tw[c] = 0.0, tdw[c] = 0.0;
        for (int b = 0; b < p; b++) {
            const int64_t row = (row_a + idx[1][b]) * shape[2];
            double gz[MAX_ORDER];
            if (contiguous && is_double) {
                const double *g = (const double *)grad_mesh + row + zidx[0];
                for (int c = 0; c < p; c++) gz[c] = g[c];
            } else if (contiguous) {
                const float *g = (const float *)grad_mesh + row + zidx[0];
                for (int c = 0; c < p; c++) gz[c] = (double)g[c];
            } else {
                for (int c = 0; c < p; c++) gz[c] = load(grad_mesh, row + zidx[c], is_double);
            }
            const double w1 = w[1][b], dw1 = dw[1][b];
            for (int c = 0; c < p; c++) tw[c] += w1 * gz[c], tdw[c] += dw1 * gz[c];
        }
        double s_b = 0.0, s_db = 0.0, s_dc = 0.0; /* Σ_bc w1 w2 G, Σ_bc dw1 w2 G, Σ_bc w1 dw2 G */
        for (int c = 0; c < p; c++) s_b += wz[c] * tw[c], s_db += wz[c] * tdw[c], s_dc += dwz[c] * tw[c];
        sum += w[0][a] * s_b;
        d0 += dw[0][a] * s_b;
        d1 += w[0][a] * s_db;
        d2 += w[0][a] * s_dc;
    }
    out[0] = sum, out[1] = d0, out[2] = d1, out[3] = d2;
}

/* dE/dq_i = Σ_k G_k Π_d w,  dE/du_id = q_i Σ_k G_k dw_d Π_{d'≠d} w  for atoms first..last−1. */
static void *backward_range(void *arg) {
    Job *job = (Job *)arg;
    const int p = job->order, is_double = job->is_double;
    const int64_t *shape = job->shape;
    double w[3][MAX_ORDER], dw[3][MAX_ORDER], sums[4];
    int64_t idx[3][MAX_ORDER];
    Tables tables;
    make_tables(job->coefficients, p, &tables);
    for (int64_t i = job->first; i < job->last; i++) {
        double ui[3], q;
        if (!load_atom(job->u, job->charges, i, is_double, ui, &q)) {
            job->bad = 1;
            continue;
        }
        if (p == 8) {
            atom_weights(ui, shape, 8, &tables, w, dw, idx);
            gather_atom(job->grad_mesh, shape, 8, w, dw, idx, is_double, sums);
        } else if (p == 6) {
            atom_weights(ui, shape, 6, &tables, w, dw, idx);
            gather_atom(job->grad_mesh, shape, 6, w, dw, idx, is_double, sums);
        } else {
            atom_weights(ui, shape, p, &tables, w, dw, idx);
            gather_atom(job->grad_mesh, shape, p, w, dw, idx, is_double, sums);
        }
        store(job->grad_charges, i, sums[0], is_double);
        store(job->grad_u, 3 * i, q * sums[1], is_double);
        store(job->grad_u, 3 * i + 1, q * sums[2], is_double);
        store(job->grad_u, 3 * i + 2, q * sums[3], is_double);
    }
    return NULL;
}

/* grad_charges, grad_u from grad_mesh (the adjoint of mesh_spread_forward). Returns 0, 1 for an unsupported order,
   3 when a coordinate u is NaN, inf or beyond ±MAX_U (that atom's outputs are then unwritten). */
int mesh_spread_backward(const void *grad_mesh, const void *charges, const void *u, int64_t n_atoms,
                         const int64_t *shape, int64_t order, const double *coefficients, void *grad_charges,
                         void *grad_u, int is_double, int64_t n_threads) {
    if (order < 2 || order > MAX_ORDER) return 1;
    if (n_threads < 1 || n_atoms < 2) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    Job jobs[64];
    for (int64_t t = 0; t < n_threads; t++) {
        Job job = {charges, u, grad_mesh, grad_charges, grad_u, shape, coefficients,
                   n_atoms * t / n_threads, n_atoms * (t + 1) / n_threads, (int)order, is_double, 0};
        jobs[t] = job;
    }
    run_jobs(jobs, n_threads, sizeof(Job), backward_range);
    int bad = 0;
    for (int64_t t = 0; t < n_threads; t++) bad |= jobs[t].bad;
    return bad ? 3 : 0;
}
