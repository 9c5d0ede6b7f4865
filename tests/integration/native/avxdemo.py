"""Builds _gvavxdemo: an AVX2 loop with no safepoints, registered as preemptible."""
import cffi

import gvthread

CDEF = """
typedef struct { uint64_t n; double out[4]; uint64_t seed; } avxjob;
void avx_kernel(void *arg);
void avx_range(uint64_t *lo, uint64_t *hi);
"""

SOURCE = r"""
#include <stdint.h>
#include <immintrin.h>
#include "gvthread_native.h"
typedef struct { uint64_t n; double out[4]; uint64_t seed; } avxjob;

/* Keeps four ymm accumulators and general registers live across the whole
 * loop, so a preemption that lost any upper half or register shows. */
GV_PREEMPTIBLE void avx_kernel(void *arg) {
    avxjob *j = arg;
    __m256d a = _mm256_set_pd(1.0 + j->seed, 2.0, 3.0, 4.0);
    __m256d b = _mm256_set1_pd(1.0000001);
    __m256d c = _mm256_set1_pd(0.9999999);
    __m256d d = _mm256_setzero_pd();
    uint64_t k = j->seed;
    for (uint64_t i = 0; i < j->n; i++) {
        a = _mm256_fmadd_pd(a, b, c);
        b = _mm256_sub_pd(b, _mm256_mul_pd(c, _mm256_set1_pd(1e-12)));
        d = _mm256_add_pd(d, _mm256_mul_pd(a, _mm256_set1_pd((double)(k & 7))));
        k = k * 6364136223846793005ull + 1442695040888963407ull;
    }
    d = _mm256_add_pd(d, _mm256_set1_pd((double)(k >> 40)));
    _mm256_storeu_pd(j->out, d);
}

GV_PREEMPTIBLE_RANGE(avx_range)
"""


def build(tmpdir):
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_gvavxdemo", SOURCE, include_dirs=[gvthread.native_include()],
                   extra_compile_args=["-O2", "-mavx2", "-mfma"])
    return ffi.compile(tmpdir=str(tmpdir))
