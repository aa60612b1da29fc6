/*
 * rt_test_augment.c — augmentation and the data part of the train config.
 *
 * The transforms are checked by their defining properties on square and
 * non-square images of one and three channels: identities (flip twice,
 * rotation by 0, scale 1, crop without padding, translation by 0) must hold
 * bit for bit; a crop must equal a literal pad-then-window of the input; a
 * rotation by 90 degrees must move every pixel where a transpose and a flip
 * put it, to within interpolation's rounding.  Random parameters are
 * checked by their range and, for the flip, by its frequency.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "cnnrt.h"
#include "rt_suites.h"

/* Shapes every property is checked on: MNIST, CIFAR, odd and non-square. */
static const struct { int c, h, w; } shapes[] = {
    {1, 28, 28}, {3, 32, 32}, {2, 5, 9}, {1, 7, 4}, {1, 1, 1},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* A c x h x w image of distinct values in (0, 1), malloc'd. */
static float *distinct_image(int c, int h, int w)
{
    int n = c * h * w;
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert(x != NULL);
    for (int i = 0; i < n; i++)
        x[i] = (float)(i + 1) / (float)(n + 2);
    return x;
}

/* A c x h x w image of random pixel values k/255, malloc'd. */
static float *random_image(int c, int h, int w, uint64_t seed)
{
    int n = c * h * w;
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert(x != NULL);
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        x[i] = (float)cnn_rng_below(&r, 256) / 255.0f;
    return x;
}

static float *copy_of(const float *x, int n)
{
    float *y = malloc((size_t)n * sizeof *y);
    ck_assert(y != NULL);
    memcpy(y, x, (size_t)n * sizeof *y);
    return y;
}

static cnn_augment aug(int type)
{
    cnn_augment a;
    memset(&a, 0, sizeof a);
    a.type = type;
    return a;
}

/* Apply a to a copy of x with generator (seed); the copy is returned. */
static float *augmented(const cnn_augment *a, const float *x, int c, int h, int w,
                        uint64_t seed)
{
    int n = c * h * w;
    float *y = copy_of(x, n), *scratch = malloc((size_t)n * sizeof *scratch);
    ck_assert(scratch != NULL);
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    cnn_augment_apply(a, y, c, h, w, &r, scratch);
    free(scratch);
    return y;
}

/* ---- identities ------------------------------------------------------------------- */

START_TEST(test_hflip)
{
    int c = shapes[_i].c, h = shapes[_i].h, w = shapes[_i].w, n = c * h * w;
    float *x = distinct_image(c, h, w), *y = copy_of(x, n);
    cnn_aug_hflip(y, c, h, w);
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                ck_assert_float_eq(y[(ch * h + i) * w + j], x[(ch * h + i) * w + (w - 1 - j)]);
    cnn_aug_hflip(y, c, h, w);
    ck_assert(memcmp(x, y, (size_t)n * sizeof *x) == 0);
    free(y);

    /* p = 1 always flips, so twice is the identity; p = 0 never flips. */
    cnn_augment a = aug(CNN_AUG_HFLIP);
    a.p = 1;
    float *once = augmented(&a, x, c, h, w, 1), *twice = augmented(&a, once, c, h, w, 2);
    ck_assert(memcmp(x, twice, (size_t)n * sizeof *x) == 0);
    ck_assert(w == 1 || memcmp(x, once, (size_t)n * sizeof *x) != 0);
    a.p = 0;
    float *never = augmented(&a, x, c, h, w, 3);
    ck_assert(memcmp(x, never, (size_t)n * sizeof *x) == 0);
    free(once);
    free(twice);
    free(never);
    free(x);
}
END_TEST

START_TEST(test_hflip_probability)
{
    cnn_augment a = aug(CNN_AUG_HFLIP);
    a.p = 0.3;
    float x[2] = {0.25f, 0.75f}, scratch[2];
    cnn_rng r;
    cnn_rng_seed(&r, 11);
    int flips = 0;
    for (int i = 0; i < 10000; i++) {
        float y[2] = {x[0], x[1]};
        cnn_augment_apply(&a, y, 1, 1, 2, &r, scratch);
        flips += y[0] == 0.75f;
    }
    ck_assert_msg(abs(flips - 3000) < 200, "%d flips in 10000 at p = 0.3", flips); /* se 46 */
}
END_TEST

/* Rotation by 0, scale by 1, crop with padding 0 and translation by 0 give
 * the input back bit for bit, whatever the generator. */
START_TEST(test_identities)
{
    int c = shapes[_i].c, h = shapes[_i].h, w = shapes[_i].w, n = c * h * w;
    float *x = random_image(c, h, w, 5);
    cnn_augment list[4] = {aug(CNN_AUG_ROTATE), aug(CNN_AUG_SCALE), aug(CNN_AUG_CROP),
                           aug(CNN_AUG_TRANSLATE)};
    list[1].min = list[1].max = 1;
    for (int k = 0; k < 4; k++) {
        list[k].fill = 0.5;
        for (uint64_t seed = 0; seed < 20; seed++) {
            float *y = augmented(&list[k], x, c, h, w, seed);
            ck_assert_msg(memcmp(x, y, (size_t)n * sizeof *x) == 0,
                          "augmentation type %d changed a %dx%dx%d image", list[k].type, c, h,
                          w);
            free(y);
        }
    }
    /* The transforms themselves at their identity parameters. */
    float *y = copy_of(x, n), scratch[32 * 32 * 3];
    cnn_aug_rotate(y, c, h, w, 0, 0.5f, scratch);
    cnn_aug_rotate(y, c, h, w, 360, 0.5f, scratch); /* cos, sin not exact: close */
    for (int i = 0; i < n; i++)
        ck_assert_float_eq_tol(y[i], x[i], 1e-5);
    memcpy(y, x, (size_t)n * sizeof *y);
    cnn_aug_zoom(y, c, h, w, 1, 0.5f, scratch);
    cnn_aug_shift(y, c, h, w, 0, 0, 0.5f, scratch);
    ck_assert(memcmp(x, y, (size_t)n * sizeof *x) == 0);
    free(y);
    free(x);
}
END_TEST

/* ---- rotation and scaling ---------------------------------------------------------- */

START_TEST(test_rotate_90)
{
    for (int n = 1; n <= 8; n++) { /* even and odd sides */
        for (int c = 1; c <= 3; c += 2) {
            int size = c * n * n;
            float *x = random_image(c, n, n, (uint64_t)n), *y = copy_of(x, size);
            float *scratch = malloc((size_t)size * sizeof *scratch);
            cnn_aug_rotate(y, c, n, n, 90, 0, scratch);
            /* Counter-clockwise: the right column becomes the top row, i.e.
             * out(i, j) = in(j, n-1-i), the transpose flipped upside down. */
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++)
                        ck_assert_float_eq_tol(y[(ch * n + i) * n + j],
                                               x[(ch * n + j) * n + (n - 1 - i)], 1e-5);
            /* Four quarter turns the other way bring it back. */
            memcpy(y, x, (size_t)size * sizeof *y);
            for (int k = 0; k < 4; k++)
                cnn_aug_rotate(y, c, n, n, -90, 0, scratch);
            for (int i = 0; i < size; i++)
                ck_assert_float_eq_tol(y[i], x[i], 1e-5);
            /* Half a turn: both flips. */
            memcpy(y, x, (size_t)size * sizeof *y);
            cnn_aug_rotate(y, c, n, n, 180, 0, scratch);
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++)
                        ck_assert_float_eq_tol(y[(ch * n + i) * n + j],
                                               x[(ch * n + n - 1 - i) * n + (n - 1 - j)], 1e-5);
            free(scratch);
            free(y);
            free(x);
        }
    }
}
END_TEST

/* Random angles: the centre pixel of an odd image stays, a constant image
 * with the same fill stays constant, and every value stays in [0, 1]. */
START_TEST(test_rotate_random)
{
    cnn_augment a = aug(CNN_AUG_ROTATE);
    a.degrees = 30;
    a.fill = 0.25;
    int c = 3, h = 9, w = 11, n = c * h * w;
    float *x = random_image(c, h, w, 3), *flat = malloc((size_t)n * sizeof *flat);
    for (int i = 0; i < n; i++)
        flat[i] = 0.25f;
    int changed = 0;
    for (uint64_t seed = 0; seed < 50; seed++) {
        float *y = augmented(&a, x, c, h, w, seed), *z = augmented(&a, flat, c, h, w, seed);
        for (int ch = 0; ch < c; ch++) {
            int mid = (ch * h + h / 2) * w + w / 2;
            ck_assert_float_eq(y[mid], x[mid]);
        }
        for (int i = 0; i < n; i++) {
            ck_assert(y[i] >= 0 && y[i] <= 1);
            ck_assert_float_eq_tol(z[i], 0.25f, 1e-6);
        }
        changed += memcmp(x, y, (size_t)n * sizeof *x) != 0;
        free(y);
        free(z);
    }
    ck_assert_int_eq(changed, 50);
    free(flat);
    free(x);
}
END_TEST

/* A bright pixel right of the centre goes up under +90 degrees, whatever
 * the aspect ratio (the rotation is about the centre of a 5x7 image). */
START_TEST(test_rotate_direction)
{
    float x[5 * 7] = {0}, scratch[5 * 7];
    x[2 * 7 + 5] = 1; /* row 2 (the middle), two right of the middle column 3 */
    cnn_aug_rotate(x, 1, 5, 7, 90, 0, scratch);
    for (int i = 0; i < 5 * 7; i++)
        ck_assert_float_eq_tol(x[i], i == 0 * 7 + 3 ? 1.0f : 0.0f, 1e-6);
}
END_TEST

/* Bilinear sampling reproduces a linear ramp exactly (to rounding), so a
 * zoom of a ramp is a ramp about the centre; outside the image, fill. */
START_TEST(test_zoom)
{
    int h = 3, w = 9;
    float x[27], y[27], scratch[27];
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++)
            x[i * w + j] = (float)j / (float)(w - 1);
    double cx = (w - 1) / 2.0;
    memcpy(y, x, sizeof x);
    cnn_aug_zoom(y, 1, h, w, 2, 0.5f, scratch); /* enlarge: samples cx + (j - cx) / 2 */
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++)
            ck_assert_float_eq_tol(y[i * w + j], (cx + (j - cx) / 2) / (w - 1), 1e-6);
    memcpy(y, x, sizeof x);
    cnn_aug_zoom(y, 1, h, w, 0.5, 0.5f, scratch); /* shrink: samples cx + 2 (j - cx) */
    for (int j = 0; j < w; j++) {
        double s = cx + 2 * (j - cx), expect = s >= 0 && s <= w - 1 ? s / (w - 1) : 0.5;
        /* rows 0 and 2 sample rows -1 and 3: fill */
        ck_assert_float_eq_tol(y[0 * w + j], 0.5f, 1e-6);
        ck_assert_float_eq_tol(y[1 * w + j], expect, 1e-6);
        ck_assert_float_eq_tol(y[2 * w + j], 0.5f, 1e-6);
    }
    /* Random scale within [min, max]: the centre pixel of an odd image stays. */
    cnn_augment a = aug(CNN_AUG_SCALE);
    a.min = 0.8;
    a.max = 1.2;
    for (uint64_t seed = 0; seed < 10; seed++) {
        float *z = augmented(&a, x, 1, h, w, seed);
        ck_assert_float_eq(z[1 * w + 4], x[1 * w + 4]);
        ck_assert(memcmp(z, x, sizeof x) != 0);
        free(z);
    }
}
END_TEST

/* ---- crop and translation ------------------------------------------------------------- */

/* If y is x shifted by (dy, dx) with fill: 1, else 0. */
static int is_shift(const float *x, const float *y, int c, int h, int w, int dy, int dx,
                    float fill)
{
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                int si = i - dy, sj = j - dx;
                float expect = si >= 0 && si < h && sj >= 0 && sj < w
                                   ? x[(ch * h + si) * w + sj] : fill;
                if (y[(ch * h + i) * w + j] != expect)
                    return 0;
            }
    return 1;
}

/* Crop with padding p equals torchvision's: pad each side by p with fill,
 * then take the h x w window at (top, left), each uniform in [0, 2p]. */
START_TEST(test_crop)
{
    int c = shapes[_i].c, h = shapes[_i].h, w = shapes[_i].w, n = c * h * w;
    const int pad = 3;
    const float fill = 0; /* every input value is > 0 */
    float *x = distinct_image(c, h, w);
    int ph = h + 2 * pad, pw = w + 2 * pad;
    float *padded = malloc((size_t)c * ph * pw * sizeof *padded);
    for (int i = 0; i < c * ph * pw; i++)
        padded[i] = fill;
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h; i++)
            memcpy(padded + (ch * ph + i + pad) * pw + pad, x + (ch * h + i) * w,
                   (size_t)w * sizeof *x);
    cnn_augment a = aug(CNN_AUG_CROP);
    a.padding = pad;
    a.fill = fill;
    int seen[7][7] = {{0}};
    for (uint64_t seed = 0; seed < 800; seed++) {
        float *y = augmented(&a, x, c, h, w, seed);
        /* Every output pixel is an input pixel or fill ... (counted, not
         * asserted per pixel: each ck_assert costs check a system call) */
        int strange = 0;
        for (int i = 0; i < n; i++)
            strange += !(y[i] == fill || (y[i] > 0 && y[i] < 1 &&
                                          fabsf(y[i] * (n + 2) - rintf(y[i] * (n + 2))) < 1e-3));
        ck_assert_int_eq(strange, 0);
        /* ... and the whole is one window of the padded image. */
        int found = 0;
        for (int top = 0; top <= 2 * pad && !found; top++)
            for (int left = 0; left <= 2 * pad && !found; left++) {
                int same = 1;
                for (int ch = 0; ch < c && same; ch++)
                    for (int i = 0; i < h && same; i++)
                        same = memcmp(y + (ch * h + i) * w,
                                      padded + (ch * ph + top + i) * pw + left,
                                      (size_t)w * sizeof *y) == 0;
                if (same) {
                    seen[top][left]++;
                    found = 1;
                }
            }
        ck_assert_msg(found, "seed %d: not a window of the padded image", (int)seed);
        free(y);
    }
    if (h >= 2 * pad + 1 && w >= 2 * pad + 1) /* windows are then told apart */
        for (int top = 0; top <= 2 * pad; top++)
            for (int left = 0; left <= 2 * pad; left++)
                ck_assert_msg(seen[top][left] > 0, "window (%d, %d) never drawn", top, left);
    free(padded);
    free(x);
}
END_TEST

/* Translation by up to max * size whole pixels in each axis, with fill. */
START_TEST(test_translate)
{
    int c = 2, h = 8, w = 12, n = c * h * w;
    float *x = distinct_image(c, h, w);
    cnn_augment a = aug(CNN_AUG_TRANSLATE);
    a.max = 0.25; /* up to 2 rows and 3 columns */
    a.fill = 0;
    int seen[5][7] = {{0}};
    for (uint64_t seed = 0; seed < 2000; seed++) { /* corner offsets: 1 in 96 */
        float *y = augmented(&a, x, c, h, w, seed);
        int found = 0;
        for (int dy = -2; dy <= 2 && !found; dy++)
            for (int dx = -3; dx <= 3 && !found; dx++)
                if (is_shift(x, y, c, h, w, dy, dx, 0)) {
                    seen[dy + 2][dx + 3]++;
                    found = 1;
                }
        ck_assert_msg(found, "seed %d: not a shift within 2 rows and 3 columns", (int)seed);
        free(y);
    }
    for (int dy = 0; dy < 5; dy++)
        for (int dx = 0; dx < 7; dx++)
            ck_assert(seen[dy][dx] > 0);
    /* Less than half a pixel: rounds to no move at all. */
    a.max = 0.01;
    float *y = augmented(&a, x, c, h, w, 9);
    ck_assert(memcmp(x, y, (size_t)n * sizeof *x) == 0);
    free(y);
    /* The shift itself, including beyond the image. */
    float scratch[2 * 8 * 12];
    const int moves[][2] = {{1, -2}, {-3, 4}, {0, 11}, {8, 0}, {-100, 100}};
    for (size_t k = 0; k < sizeof moves / sizeof moves[0]; k++) {
        y = copy_of(x, n);
        cnn_aug_shift(y, c, h, w, moves[k][0], moves[k][1], 0.5f, scratch);
        ck_assert(is_shift(x, y, c, h, w, moves[k][0], moves[k][1], 0.5f));
        free(y);
    }
    free(x);
}
END_TEST

/* A chain of all five: the same generator gives the same image, another
 * generator another one; the input is never read past its size. */
START_TEST(test_augment_chain_deterministic)
{
    int c = 3, h = 32, w = 32, n = c * h * w;
    cnn_augment list[5] = {aug(CNN_AUG_HFLIP), aug(CNN_AUG_ROTATE), aug(CNN_AUG_SCALE),
                           aug(CNN_AUG_CROP), aug(CNN_AUG_TRANSLATE)};
    list[0].p = 0.5;
    list[1].degrees = 15;
    list[2].min = 0.9;
    list[2].max = 1.1;
    list[3].padding = 4;
    list[4].max = 0.1;
    float *x = random_image(c, h, w, 8), *scratch = malloc((size_t)n * sizeof *scratch);
    float *y[3];
    for (int k = 0; k < 3; k++) {
        y[k] = copy_of(x, n);
        cnn_rng r;
        cnn_rng_seed(&r, k < 2 ? 100 : 101);
        for (int j = 0; j < 5; j++)
            cnn_augment_apply(&list[j], y[k], c, h, w, &r, scratch);
        for (int i = 0; i < n; i++)
            ck_assert(y[k][i] >= 0 && y[k][i] <= 1);
    }
    ck_assert(memcmp(y[0], y[1], (size_t)n * sizeof *x) == 0);
    ck_assert(memcmp(y[0], y[2], (size_t)n * sizeof *x) != 0);
    ck_assert(memcmp(y[0], x, (size_t)n * sizeof *x) != 0);
    for (int k = 0; k < 3; k++)
        free(y[k]);
    free(scratch);
    free(x);
}
END_TEST

/* ---- the data config --------------------------------------------------------------------- */

START_TEST(test_data_config_good)
{
    cnn_train_config c;
    cnn_error err;
    ck_assert_msg(cnn_train_config_parse(
                      "{\"normalize\": \"given\", \"mean\": [0.49, 0.48, 0.45],"
                      " \"std\": [0.25, 0.24, 0.26], \"validation\": 0.1, \"augment\": ["
                      " {\"type\": \"hflip\", \"p\": 0.25},"
                      " {\"type\": \"rotate\", \"degrees\": 10, \"fill\": 0.5},"
                      " {\"type\": \"scale\", \"min\": 0.9, \"max\": 1.1, \"fill\": 0},"
                      " {\"type\": \"crop\", \"padding\": 4, \"fill\": 0, \"later\": 1},"
                      " {\"type\": \"translate\", \"max\": 0.1},"
                      " {\"type\": \"hflip\"}], \"future_key\": [1]}",
                      &c, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(c.data.normalize, 1);
    ck_assert_int_eq(c.data.channels, 3);
    ck_assert_double_eq(c.data.mean[1], 0.48);
    ck_assert_double_eq(c.data.std[2], 0.26);
    ck_assert_double_eq(c.data.validation, 0.1);
    ck_assert_int_eq(c.data.n_augment, 6);
    const cnn_augment *a = c.data.augment;
    ck_assert(a[0].type == CNN_AUG_HFLIP && a[0].p == 0.25);
    ck_assert(a[1].type == CNN_AUG_ROTATE && a[1].degrees == 10 && a[1].fill == 0.5);
    ck_assert(a[2].type == CNN_AUG_SCALE && a[2].min == 0.9 && a[2].max == 1.1);
    ck_assert(a[3].type == CNN_AUG_CROP && a[3].padding == 4 && a[3].fill == 0);
    ck_assert(a[4].type == CNN_AUG_TRANSLATE && a[4].max == 0.1 && a[4].fill == 0);
    ck_assert(a[5].type == CNN_AUG_HFLIP && a[5].p == 0.5); /* torchvision's default */

    ck_assert_int_eq(cnn_train_config_parse("{\"normalize\": \"auto\", \"augment\": []}", &c,
                                            &err), 0);
    ck_assert_int_eq(c.data.normalize, 2);
    ck_assert_int_eq(c.data.n_augment, 0);
    /* Defaults. */
    ck_assert_int_eq(cnn_train_config_parse("{}", &c, &err), 0);
    ck_assert_int_eq(c.data.normalize, 0);
    ck_assert_double_eq(c.data.validation, 0);
    ck_assert_int_eq(c.data.n_augment, 0);
    ck_assert_int_eq(cnn_train_config_parse("{\"normalize\": \"none\", \"validation\": 0}", &c,
                                            &err), 0);
    ck_assert_int_eq(c.data.normalize, 0);
    /* As the compiler writes it: every key, null for "not given". */
    ck_assert_msg(cnn_train_config_parse("{\"normalize\": \"auto\", \"mean\": null, "
                                         "\"std\": null, \"validation\": 0.0, \"augment\": "
                                         "[{\"type\": \"scale\"}, {\"type\": \"crop\"}, "
                                         "{\"type\": \"translate\"}]}",
                                         &c, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(c.data.normalize, 2);
    ck_assert_int_eq(c.data.n_augment, 3);
    ck_assert(a[0].min == 0.9 && a[0].max == 1.1 && a[0].fill == 0); /* the compiler's defaults */
    ck_assert(a[1].padding == 4 && a[2].max == 0.1);
}
END_TEST

static const struct { const char *json, *expect; } bad_data_configs[] = {
    {"{\"normalize\": 1}", "\"normalize\" must be \"none\", \"auto\" or \"given\""},
    {"{\"normalize\": \"zscore\"}", "\"normalize\" must be"},
    {"{\"normalize\": \"given\"}", "\"given\" needs both \"mean\" and \"std\""},
    {"{\"normalize\": \"given\", \"mean\": [0.5]}", "needs both \"mean\" and \"std\""},
    {"{\"normalize\": \"given\", \"mean\": [0.5, 0.5], \"std\": [0.2]}",
     "\"mean\" has 2 values but \"std\" has 1"},
    {"{\"normalize\": \"given\", \"mean\": 0.5, \"std\": [0.2]}", "\"mean\" must be an array"},
    {"{\"normalize\": \"given\", \"mean\": [], \"std\": []}", "\"mean\" must be an array of 1"},
    {"{\"normalize\": \"given\", \"mean\": [\"a\"], \"std\": [1]}", "\"mean\"[0] must be a number"},
    {"{\"normalize\": \"given\", \"mean\": [0.5, 0.5], \"std\": [0.2, 0]}",
     "\"std\"[1] is 0, must be > 0"},
    {"{\"normalize\": \"given\", \"mean\": [0], \"std\": [-1]}", "\"std\"[0] is -1"},
    {"{\"normalize\": \"given\", \"mean\": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"
     " \"std\": [1]}", "\"mean\" must be an array of 1 to 16 numbers"},
    {"{\"normalize\": \"auto\", \"mean\": [0.5], \"std\": [0.2]}",
     "\"mean\" is given but \"normalize\" is \"auto\""},
    {"{\"std\": [0.2]}", "\"std\" is given but \"normalize\" is \"none\""},
    {"{\"validation\": 0.95}", "\"validation\" is 0.95, must be in [0, 0.9]"},
    {"{\"validation\": -0.1}", "\"validation\" is -0.1"},
    {"{\"validation\": \"10%\"}", "\"validation\" must be a number"},
    {"{\"augment\": {\"type\": \"hflip\"}}", "\"augment\" must be an array"},
    {"{\"augment\": [\"hflip\"]}", "\"augment\"[0] must be an object"},
    {"{\"augment\": [{\"p\": 0.5}]}", "\"augment\"[0] needs a \"type\" string"},
    {"{\"augment\": [{\"type\": \"hflip\"}, {\"type\": \"vflip\"}]}",
     "\"augment\"[1]: unknown type \"vflip\" (this runtime knows: hflip, rotate, scale, crop, "
     "translate)"},
    {"{\"augment\": [{\"type\": \"hflip\", \"p\": 1.5}]}",
     "augment[0] (hflip): \"p\" is 1.5, must be in [0, 1]"},
    {"{\"augment\": [{\"type\": \"hflip\", \"p\": true}]}",
     "augment[0] (hflip): \"p\" must be a number"},
    {"{\"augment\": [{\"type\": \"rotate\"}]}", "augment[0] (rotate): \"degrees\" is required"},
    {"{\"augment\": [{\"type\": \"rotate\", \"degrees\": \"ten\"}]}",
     "\"degrees\" must be a number"},
    {"{\"augment\": [{\"type\": \"rotate\", \"degrees\": 200}]}",
     "\"degrees\" is 200, must be in [0, 180]"},
    {"{\"augment\": [{\"type\": \"rotate\", \"degrees\": 10, \"fill\": 2}]}",
     "augment[0] (rotate): \"fill\" is 2, must be in [0, 1]"},
    {"{\"augment\": [{\"type\": \"scale\", \"min\": 1.1, \"max\": 0.9}]}",
     "augment[0] (scale): \"min\" 1.1 is larger than \"max\" 0.9"},
    {"{\"augment\": [{\"type\": \"scale\", \"min\": 0, \"max\": 1}]}", "\"min\" is 0, must be in"},
    {"{\"augment\": [{\"type\": \"scale\", \"min\": 1.2}]}",
     "\"min\" 1.2 is larger than \"max\" 1.1"},
    {"{\"augment\": [{\"type\": \"crop\", \"padding\": 2.5}]}",
     "augment[0] (crop): \"padding\" must be an integer in [0, 4096]"},
    {"{\"augment\": [{\"type\": \"crop\", \"padding\": -1}]}", "\"padding\" must be an integer"},
    {"{\"augment\": [{\"type\": \"crop\", \"padding\": null}]}", "\"padding\" must be an integer"},
    {"{\"normalize\": \"given\", \"mean\": [0.5], \"std\": null}", "needs both"},
    {"{\"augment\": [{\"type\": \"translate\", \"max\": 1.5}]}",
     "augment[0] (translate): \"max\" is 1.5, must be in [0, 1]"},
    {"{\"augment\": [{\"type\":\"hflip\"},{\"type\":\"hflip\"},{\"type\":\"hflip\"},"
     "{\"type\":\"hflip\"},{\"type\":\"hflip\"},{\"type\":\"hflip\"},{\"type\":\"hflip\"},"
     "{\"type\":\"hflip\"},{\"type\":\"hflip\"}]}", "\"augment\" has 9 entries, at most 8"},
};

START_TEST(test_data_config_bad)
{
    cnn_train_config c;
    cnn_error err;
    ck_assert_int_eq(cnn_train_config_parse(bad_data_configs[_i].json, &c, &err), -1);
    ck_assert_msg(strstr(err.msg, bad_data_configs[_i].expect), "expected \"%s\" in \"%s\"",
                  bad_data_configs[_i].expect, err.msg);
    ck_assert_msg(strncmp(err.msg, "train config: ", 14) == 0, "%s", err.msg);
}
END_TEST

Suite *rt_augment_suite(void)
{
    Suite *s = suite_create("augment");
    TCase *t = tcase_create("transforms");
    tcase_add_loop_test(t, test_hflip, 0, N_SHAPES);
    tcase_add_test(t, test_hflip_probability);
    tcase_add_loop_test(t, test_identities, 0, N_SHAPES);
    tcase_add_test(t, test_rotate_90);
    tcase_add_test(t, test_rotate_random);
    tcase_add_test(t, test_rotate_direction);
    tcase_add_test(t, test_zoom);
    tcase_add_loop_test(t, test_crop, 0, N_SHAPES);
    tcase_add_test(t, test_translate);
    tcase_add_test(t, test_augment_chain_deterministic);
    suite_add_tcase(s, t);

    t = tcase_create("data config");
    tcase_add_test(t, test_data_config_good);
    tcase_add_loop_test(t, test_data_config_bad, 0,
                        (int)(sizeof bad_data_configs / sizeof bad_data_configs[0]));
    suite_add_tcase(s, t);
    return s;
}
