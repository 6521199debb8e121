#include "base/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cs_rng_seed(cs_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t cs_rng_u64(cs_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double cs_rng_uniform(cs_rng *r)
{
    return (double)(cs_rng_u64(r) >> 11) * 0x1.0p-53;
}

double cs_rng_normal(cs_rng *r)
{
    double u1 = cs_rng_uniform(r), u2 = cs_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double cs_rng_sign(cs_rng *r)
{
    return (cs_rng_u64(r) >> 63) ? 1.0 : -1.0;
}

int64_t cs_rng_categorical(cs_rng *r, const double *p, int64_t n)
{
    double u = cs_rng_uniform(r), acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += p[i];
        if (u < acc)
            return i;
    }
    return n - 1; /* rounding left u above the total */
}
