/* The single-width mesh energy of lesmd/les/uniform_mesh.py, in plain C: the arithmetic around its two FFTs and,
 * for meshes of up to uniform_mesh.NATIVE_FFT_MAX_POINTS points, the whole forward (mesh_energy_forward: mesh
 * coordinates, spreading, FFT of fft3d.h, the pass over the modes) and the whole backward (mesh_energy_backward:
 * inverse FFT, gather, gradients) as one call each. Larger meshes use torch.fft between mesh_spread.c's kernels
 * and mesh_forward_terms / mesh_energy_gradients. mesh_forward_fft and mesh_inverse_fft are also the tests'
 * entry to the FFTs.
 *
 * Forward (S = FFT[Q] on the half mesh, M modes, complex; w the mode weights), one pass over the modes:
 *     power_m = |S_m|²,   E_W = Σ_m w_m power_m,   q2 = Σ_i q_i²,
 *     and, when a gradient will be wanted, F_m = S_m · c_m (c the ∂E/∂Q filter, input of the inverse FFT) and the
 *     six slope sums Σ_m slope_m power_m m_a m_b of the cell gradient
 * Backward, after the gather (ū = ∂E_W/∂u per atom, φ_i = ∂E_W/∂q_i; g the incoming gradient):
 *     ∂E/∂q_i = g (φ_i − 2 κ q_i)                      (κ = C + c_self)
 *     ∂E/∂r_i = g ū_i (X K)ᵀ
 *     ∂E/∂h   = g [ T · (rᵀū, s) − (E_W − q2 C) Xᵀ ],  s_k = (slope sum)_k − q2 σ_k
 * with T the per-cell (9, 15) map of uniform_mesh._cell_map and σ the aliasing-correction slopes. Sums are in
 * double precision; complex and per-atom arrays are float or double (is_double), the per-cell tables double.
 * uniform_mesh.reference_energy (composable torch operations) is the reference; tests compare both.
 */
#define _GNU_SOURCE /* dladdr, see native_parallel.h */
#include <stddef.h>
#include <stdint.h>

#include "../native_parallel.h"
#include "fft3d.h"
#include "mesh_spread.c" /* the spreading and its adjoint (load, store), compiled into this kernel too */

/* The half-mesh spectrum S: interleaved complex values (re, im) of the charges' dtype (torch.fft.rfftn), or
   separate float64 planes re, im (fft3d.h). */
typedef struct {
    const void *interleaved;
    double *re, *im;
    int is_double;
} Spectrum;

/* One pass over the half mesh (n1 × n2 × n3 modes; power_m = |S_m|²): out[0] = E_W = Σ_m w_m power_m, out[1] =
   q2 = Σ_i q_i²; when slope_weights != NULL also the six slope sums out[2..7] = Σ_m slope_m power_m m_a m_b (ab =
   00, 11, 22, 01, 02, 12; m = (freq1, freq2, freq3) the signed mode numbers per axis, slope = ∂w/∂k² at fixed
   volume); when filter != NULL the ∂E/∂Q filter F_m = S_m · c_m (computed here, while S is in cache) into
   filtered (interleaved, the charges' dtype) or, when filtered == NULL, in place of the planes. */
static void forward_terms(Spectrum spectrum, const double *weights, const double *filter,
                          const double *slope_weights, const double *freq1, const double *freq2, const double *freq3,
                          int64_t n1, int64_t n2, int64_t n3, const void *charges, int64_t n_atoms, void *filtered,
                          double *out, int is_double) {
    double energy = 0.0, q2 = 0.0, s[6] = {0.0};
    int64_t m = 0;
    for (int64_t a = 0; a < n1; a++)
        for (int64_t b = 0; b < n2; b++) {
            const double f1 = freq1[a], f2 = freq2[b];
            for (int64_t c = 0; c < n3; c++, m++) {
                double re, im;
                if (spectrum.interleaved != NULL)
                    re = load(spectrum.interleaved, 2 * m, spectrum.is_double),
                    im = load(spectrum.interleaved, 2 * m + 1, spectrum.is_double);
                else
                    re = spectrum.re[m], im = spectrum.im[m];
                const double power = re * re + im * im;
                energy += weights[m] * power;
                if (filter != NULL && filtered != NULL) {
                    store(filtered, 2 * m, re * filter[m], is_double);
                    store(filtered, 2 * m + 1, im * filter[m], is_double);
                } else if (filter != NULL && spectrum.re != NULL) {
                    spectrum.re[m] = re * filter[m], spectrum.im[m] = im * filter[m];
                }
                if (slope_weights != NULL) {
                    const double t = slope_weights[m] * power, f3 = freq3[c];
                    s[0] += t * f1 * f1, s[1] += t * f2 * f2, s[2] += t * f3 * f3;
                    s[3] += t * f1 * f2, s[4] += t * f1 * f3, s[5] += t * f2 * f3;
                }
            }
        }
    for (int64_t i = 0; i < n_atoms; i++) {
        const double q = load(charges, i, is_double);
        q2 += q * q;
    }
    out[0] = energy, out[1] = q2;
    for (int k = 0; k < 6; k++) out[2 + k] = s[k];
}

/* forward_terms on the spectrum of torch.fft.rfftn (interleaved, the charges' dtype); filtered: interleaved too. */
void mesh_forward_terms(const void *structure, const double *weights, const double *filter,
                        const double *slope_weights, const double *freq1, const double *freq2, const double *freq3,
                        int64_t n1, int64_t n2, int64_t n3, const void *charges, int64_t n_atoms, void *filtered,
                        double *out, int is_double) {
    Spectrum spectrum = {structure, NULL, NULL, is_double};
    forward_terms(spectrum, weights, filter, slope_weights, freq1, freq2, freq3, n1, n2, n3, charges, n_atoms,
                  filtered, out, is_double);
}

/* Doubles of work space for mesh_forward_fft, mesh_inverse_fft, mesh_energy_forward and mesh_energy_backward on
   this mesh shape: a copy of the two spectrum planes, the FFT's own, and the real mesh. */
int64_t mesh_fft_work_size(const int64_t *shape) {
    return 2 * shape[0] * shape[1] * (shape[2] / 2 + 1) + fft3d_work_size(shape) + shape[0] * shape[1] * shape[2];
}

/* The real mesh's FFT (fft3d.h) into the planes re, im (M = K1·K2·(K3/2+1) doubles each), then forward_terms,
   the filter (when filter != NULL) applied in place. Returns 0, or the status of fft3d_forward. */
int mesh_forward_fft(const void *mesh, const int64_t *shape, double *re, double *im, double *work,
                     const double *weights, const double *filter, const double *slope_weights, const double *freq1,
                     const double *freq2, const double *freq3, const void *charges, int64_t n_atoms, double *out,
                     int is_double, int64_t n_threads) {
    const int status = fft3d_forward(mesh, shape, re, im, work, is_double, n_threads);
    if (status != 0) return status;
    Spectrum spectrum = {NULL, re, im, 1};
    forward_terms(spectrum, weights, filter, slope_weights, freq1, freq2, freq3, shape[0], shape[1],
                  shape[2] / 2 + 1, charges, n_atoms, NULL, out, is_double);
    return 0;
}

/* The real mesh (K1, K2, K3; the charges' dtype) of the inverse FFT of the filtered planes re, im (left unchanged:
   copied into the work space first). Returns 0, or the status of fft3d_inverse. */
int mesh_inverse_fft(const double *re, const double *im, const int64_t *shape, double *work, void *mesh,
                     int is_double, int64_t n_threads) {
    const int64_t size = shape[0] * shape[1] * (shape[2] / 2 + 1);
    memcpy(work, re, sizeof(double) * (size_t)size);
    memcpy(work + size, im, sizeof(double) * (size_t)size);
    return fft3d_inverse(work, work + size, shape, mesh, work + 2 * size, is_double, n_threads);
}

/* ∂E/∂q (when grad_charges != NULL), ∂E/∂r (when grad_positions != NULL) and ∂E/∂h (when grad_cell != NULL, 9
   doubles, row-major) for the incoming gradient g. scalars = {g, κ, E_W, q2, C}. */
void mesh_energy_gradients(const void *potential, const void *grad_u, const void *charges, const void *positions,
                           int64_t n_atoms, const double *scaled_inverse, const double *slope_sums,
                           const double *correction_slopes, const double *cell_map, const double *inverse,
                           const double *scalars, void *grad_charges, void *grad_positions, double *grad_cell,
                           int is_double) {
    const double g = scalars[0], kappa = scalars[1], mode_energy = scalars[2], q2 = scalars[3];
    const double correction = scalars[4];
    if (grad_charges != NULL)
        for (int64_t i = 0; i < n_atoms; i++) {
            double value = load(potential, i, is_double) - 2.0 * kappa * load(charges, i, is_double);
            store(grad_charges, i, g * value, is_double);
        }
    if (grad_positions != NULL)
        for (int64_t i = 0; i < n_atoms; i++)
            for (int a = 0; a < 3; a++) {
                double value = 0.0;
                for (int b = 0; b < 3; b++) value += load(grad_u, 3 * i + b, is_double) * scaled_inverse[3 * a + b];
                store(grad_positions, 3 * i + a, g * value, is_double);
            }
    if (grad_cell == NULL) return;
    double inputs[15] = {0.0}; /* rᵀū (9, row-major), then the six slope sums */
    for (int64_t i = 0; i < n_atoms; i++)
        for (int a = 0; a < 3; a++) {
            double r = load(positions, 3 * i + a, is_double);
            for (int b = 0; b < 3; b++) inputs[3 * a + b] += r * load(grad_u, 3 * i + b, is_double);
        }
    for (int k = 0; k < 6; k++) inputs[9 + k] = slope_sums[k] - q2 * correction_slopes[k];
    const double volume_grad = mode_energy - q2 * correction;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double value = -volume_grad * inverse[3 * b + a]; /* −(volume term) Xᵀ */
            for (int k = 0; k < 15; k++) value += cell_map[15 * (3 * a + b) + k] * inputs[k];
            grad_cell[3 * a + b] = g * value;
        }
}

/* u = r (X K) for every atom (positions r (N, 3) and u in the charges' dtype, XK (3, 3) double), into u. */
static void scaled_coordinates(const void *positions, const double *scaled_inverse, int64_t n_atoms, void *u,
                               int is_double) {
    for (int64_t i = 0; i < n_atoms; i++)
        for (int b = 0; b < 3; b++) {
            double value = 0.0;
            for (int a = 0; a < 3; a++) value += load(positions, 3 * i + a, is_double) * scaled_inverse[3 * a + b];
            store(u, 3 * i + b, value, is_double);
        }
}

/* The whole forward of the node on a mesh of up to a few 10⁴ points: u = r X K, spread the charges
   (mesh_spread.c) onto a real mesh in the work space, transform it and take the pass over the modes
   (mesh_forward_fft). Returns 0; the spreading's status + 10 (11 order, 12 memory, 13 a non-finite or far
   coordinate); the FFT's + 20; 2 when u cannot be allocated. */
int mesh_energy_forward(const void *charges, const void *positions, int64_t n_atoms, const double *scaled_inverse,
                        const int64_t *shape, int64_t order, const double *coefficients, double *re, double *im,
                        double *work, const double *weights, const double *filter, const double *slope_weights,
                        const double *freq1, const double *freq2, const double *freq3, double *out, int is_double,
                        int64_t spread_threads, int64_t fft_threads) {
    const int64_t n_mesh = shape[0] * shape[1] * shape[2];
    void *mesh = work + mesh_fft_work_size(shape) - n_mesh;
    memset(mesh, 0, (size_t)n_mesh * (is_double ? sizeof(double) : sizeof(float)));
    void *u = malloc(3 * (size_t)n_atoms * (is_double ? sizeof(double) : sizeof(float)));
    if (u == NULL) return 2;
    scaled_coordinates(positions, scaled_inverse, n_atoms, u, is_double);
    int status = mesh_spread_forward(charges, u, n_atoms, shape, order, coefficients, mesh, is_double, spread_threads);
    free(u);
    if (status != 0) return 10 + status;
    const int64_t half = shape[0] * shape[1] * (shape[2] / 2 + 1);
    status = mesh_forward_fft(mesh, shape, re, im, work + 2 * half, weights, filter, slope_weights, freq1, freq2,
                              freq3, charges, n_atoms, out, is_double, fft_threads);
    return status != 0 ? 20 + status : 0;
}

/* The whole backward of the node after mesh_energy_forward: the inverse FFT of the filtered planes re, im (kept)
   into a real mesh in the work space, u = r X K again, the gather (mesh_spread.c) of φ and ū, then
   mesh_energy_gradients. Returns 0; the gather's status + 10; the FFT's + 20; 2 out of memory. */
int mesh_energy_backward(const double *re, const double *im, const int64_t *shape, double *work, const void *charges,
                         const void *positions, int64_t n_atoms, int64_t order, const double *coefficients,
                         const double *scaled_inverse, const double *slope_sums, const double *correction_slopes,
                         const double *cell_map, const double *inverse, const double *scalars, void *grad_charges,
                         void *grad_positions, double *grad_cell, int is_double, int64_t spread_threads,
                         int64_t fft_threads) {
    const int64_t n_mesh = shape[0] * shape[1] * shape[2];
    void *mesh = work + mesh_fft_work_size(shape) - n_mesh;
    int status = mesh_inverse_fft(re, im, shape, work, mesh, is_double, fft_threads);
    if (status != 0) return 20 + status;
    const size_t item = is_double ? sizeof(double) : sizeof(float);
    char *buffers = (char *)malloc(7 * (size_t)n_atoms * item); /* φ (N), ū (N, 3), u (N, 3) */
    if (buffers == NULL) return 2;
    void *potential = buffers, *grad_u = buffers + (size_t)n_atoms * item, *u = buffers + 4 * (size_t)n_atoms * item;
    scaled_coordinates(positions, scaled_inverse, n_atoms, u, is_double);
    status = mesh_spread_backward(mesh, charges, u, n_atoms, shape, order, coefficients, potential, grad_u, is_double,
                                  spread_threads);
    if (status == 0)
        mesh_energy_gradients(potential, grad_u, charges, positions, n_atoms, scaled_inverse, slope_sums,
                              correction_slopes, cell_map, inverse, scalars, grad_charges, grad_positions, grad_cell,
                              is_double);
    free(buffers);
    return status != 0 ? 10 + status : 0;
}
