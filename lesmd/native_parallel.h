/* Parallel loop over independent jobs for the C kernels of lesmd (included by each kernel's source).
 *
 * Built with OpenMP (lesmd.native compiles with -fopenmp where the compiler supports it), the jobs run on the
 * threads of the process's OpenMP pool. PyTorch's CPU operations use that same pool when torch and the kernel
 * link the same OpenMP runtime (lesmd.native.shared_openmp_pool checks this), so a kernel call wakes threads
 * that are already spinning instead of competing with them for the cores. Otherwise (no OpenMP, or another
 * runtime than torch's), POSIX threads are started for the call.
 */
#ifndef LESMD_NATIVE_PARALLEL_H
#define LESMD_NATIVE_PARALLEL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* 1: run_jobs uses the OpenMP pool; 0: POSIX threads started for the call. lesmd.native sets 0 for a kernel whose
   OpenMP runtime is not torch's (its idle threads would spin next to torch's pool and compete for the cores). */
static int use_openmp = 1;

void lesmd_set_openmp(int on) { use_openmp = on; }

/* Run worker(jobs + t * job_size) for t = 0 .. n − 1, concurrently; n ≤ 64. */
static void run_jobs(void *jobs, int64_t n, size_t job_size, void *(*worker)(void *)) {
    char *base = (char *)jobs;
    if (n <= 1) {
        worker(base);
        return;
    }
#ifdef _OPENMP
    if (use_openmp) {
#pragma omp parallel for num_threads((int)n) schedule(static, 1)
        for (int64_t t = 0; t < n; t++) worker(base + t * job_size);
        return;
    }
#endif
    pthread_t threads[64];
    int started[64] = {0};
    for (int64_t t = 1; t < n; t++) started[t] = pthread_create(&threads[t], NULL, worker, base + t * job_size) == 0;
    worker(base);
    for (int64_t t = 1; t < n; t++) {
        if (started[t]) pthread_join(threads[t], NULL);
        else worker(base + t * job_size); /* no thread: do its share here */
    }
}

/* The file of the OpenMP runtime this kernel calls (lesmd.native compares it with torch's), "" when it was built
   without OpenMP (POSIX threads). dladdr needs _GNU_SOURCE, defined by each kernel before its first include. */
#ifdef _OPENMP
#include <dlfcn.h>
#include <omp.h>
#endif
const char *lesmd_openmp_runtime(void) {
#ifdef _OPENMP
    Dl_info info;
    if (dladdr((void *)omp_get_max_threads, &info) && info.dli_fname != NULL) return info.dli_fname;
    return "?";
#else
    return "";
#endif
}

#endif
