/*
 * rng.c — the runtime's random numbers: xoshiro256** seeded by splitmix64.
 *
 * Everything random in training (initial weights, the order of examples,
 * later augmentation and dropout) draws from these generators, so a seed
 * reproduces a run bit for bit on any machine: the integer streams are
 * exact, and the derived doubles use only IEEE arithmetic plus log/cos/sqrt.
 *
 * The state is the four words of cnn_rng and nothing else, so it can be
 * saved in a checkpoint.  That is why cnn_rng_normal() does not keep the
 * second value of its Box-Muller pair: it draws two uniforms per call.
 *
 * Independent streams come from cnn_rng_seed_stream(): the seed, a name
 * and an index are hashed (FNV-1a over the name, splitmix64 finalizers to
 * mix the words) into the seed of a fresh generator.  A parameter's initial
 * values thus depend only on the run's seed and the parameter's name.
 */
#include "cnnrt.h"

#include <math.h>

/* splitmix64: advances *x and returns a well-mixed word. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void cnn_rng_seed(cnn_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    /* splitmix64 is a bijection of a counter, so the four words can't all
     * be zero; xoshiro's only forbidden state never occurs. */
}

uint64_t cnn_rng_u64(cnn_rng *r)
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

double cnn_rng_uniform(cnn_rng *r)
{
    /* The top 53 bits, scaled: every double in [0, 1) on the 2^-53 grid. */
    return (double)(cnn_rng_u64(r) >> 11) * 0x1.0p-53;
}

double cnn_rng_normal(cnn_rng *r)
{
    double u1 = 1.0 - cnn_rng_uniform(r); /* (0, 1]: log(u1) is finite */
    double u2 = cnn_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Rejection sampling: discard the lowest (2^64 mod n) values, after which
 * r % n is exactly uniform.  At most one draw in two is rejected (n near
 * 2^63); for the small n of shuffling, almost never. */
uint64_t cnn_rng_below(cnn_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    uint64_t threshold = (0 - n) % n; /* = 2^64 mod n */
    for (;;) {
        uint64_t x = cnn_rng_u64(r);
        if (x >= threshold)
            return x % n;
    }
}

void cnn_rng_seed_stream(cnn_rng *r, uint64_t seed, const char *name, uint64_t index)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the name */
    for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    uint64_t x = seed;
    uint64_t mixed = splitmix64(&x);
    x = mixed ^ h;
    mixed = splitmix64(&x);
    x = mixed ^ index;
    cnn_rng_seed(r, splitmix64(&x));
}
