/* Sums and dot products of float / double arrays, returned in double.
 *
 * One running double sum is a chain of dependent adds (about 4 cycles an
 * element, never vectorized without -ffast-math).  Here the additions run in
 * CS_ACCUM_LANES independent partial sums that the compiler keeps in vector
 * registers:
 *   - double arrays: the partial sums are doubles;
 *   - float arrays: blocks of at most CS_ACCUM_BLOCK elements are summed in
 *     float partial sums (each adds at most CS_ACCUM_BLOCK / CS_ACCUM_LANES
 *     = 8 terms, so its rounding error is at most 8 float ulps of the
 *     block's magnitude), and the blocks' partial sums are added in double.
 *     Converting every element to double costs more than the adds (measured:
 *     1.6x slower for BatchNormalization's channel sums).
 * The order of the additions depends only on n, so results do not depend on
 * the thread count or on where the array lies. */
#ifndef CS_TENSOR_ACCUM_H
#define CS_TENSOR_ACCUM_H

#include <stdint.h>

#define CS_ACCUM_LANES 16
#define CS_ACCUM_BLOCK 128

/* The partial sums, folded pairwise. */
static inline double cs_accum_fold(const double *acc)
{
    double s[CS_ACCUM_LANES / 2];
    for (int k = 0; k < CS_ACCUM_LANES / 2; k++)
        s[k] = acc[k] + acc[k + CS_ACCUM_LANES / 2];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* TERM(j) is the j-th term; LANE is the partial sums' type. */
#define CS_ACCUM_LOOP(LANE, TERM)                                                               \
    double acc[CS_ACCUM_LANES] = {0}, tail = 0;                                                 \
    const int64_t n_main = n > 0 ? n - n % CS_ACCUM_LANES : 0;                                  \
    for (int64_t j0 = 0; j0 < n_main; j0 += CS_ACCUM_BLOCK) {                                   \
        const int64_t len = n_main - j0 < CS_ACCUM_BLOCK ? n_main - j0 : CS_ACCUM_BLOCK;        \
        LANE part[CS_ACCUM_LANES] = {0};                                                        \
        for (int64_t b = j0; b < j0 + len; b += CS_ACCUM_LANES)                                 \
            for (int k = 0; k < CS_ACCUM_LANES; k++)                                            \
                part[k] += TERM(b + k);                                                         \
        for (int k = 0; k < CS_ACCUM_LANES; k++)                                                \
            acc[k] += (double)part[k];                                                          \
    }                                                                                           \
    for (int64_t j = n_main; j < n; j++)                                                        \
        tail += (double)TERM(j);                                                                \
    return cs_accum_fold(acc) + tail;

#define CS_DEFINE_ACCUM(T, SUF)                                                                 \
    /* sum x[j], j < n */                                                                       \
    static inline double cs_sum_##SUF(const T *restrict x, int64_t n)                           \
    {                                                                                           \
        CS_ACCUM_LOOP(T, CS_ACCUM_X)                                                            \
    }                                                                                           \
    /* sum x[j] y[j], j < n */                                                                  \
    static inline double cs_dot_##SUF(const T *restrict x, const T *restrict y, int64_t n)      \
    {                                                                                           \
        CS_ACCUM_LOOP(T, CS_ACCUM_XY)                                                           \
    }                                                                                           \
    /* sum (x[j] - mu) y[j], j < n, every term and partial sum in double (the \
     * centring must not round away a small x - mu) */                          \
    static inline double cs_dot_centered_##SUF(const T *restrict x, const T *restrict y,        \
                                               double mu, int64_t n)                           \
    {                                                                                           \
        CS_ACCUM_LOOP(double, CS_ACCUM_CENTERED)                                                \
    }

#define CS_ACCUM_X(j) x[j]
#define CS_ACCUM_XY(j) (x[j] * y[j])
#define CS_ACCUM_CENTERED(j) (((double)x[j] - mu) * (double)y[j])

CS_DEFINE_ACCUM(float, f32)
CS_DEFINE_ACCUM(double, f64)

#undef CS_DEFINE_ACCUM

#endif
