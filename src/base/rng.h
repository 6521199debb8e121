/* Seeded pseudo-random numbers: xoshiro256** (Blackman & Vigna 2018),
 * seeded through splitmix64.  Same seed, same stream, on every machine. */
#ifndef CS_BASE_RNG_H
#define CS_BASE_RNG_H

#include <stdint.h>

typedef struct cs_rng {
    uint64_t s[4];
} cs_rng;

void cs_rng_seed(cs_rng *r, uint64_t seed);
uint64_t cs_rng_u64(cs_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double cs_rng_uniform(cs_rng *r);
/* Standard normal (Box-Muller; one value per call). */
double cs_rng_normal(cs_rng *r);
/* +1 or -1 with equal probability (Rademacher). */
double cs_rng_sign(cs_rng *r);
/* Index drawn from the categorical distribution p[0..n) (sums to 1). */
int64_t cs_rng_categorical(cs_rng *r, const double *p, int64_t n);

#endif
