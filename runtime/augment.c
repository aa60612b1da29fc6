/*
 * augment.c — random augmentation of training images, one function per
 * type, in [0, 1] pixel units (before normalization).
 *
 * The geometry follows torchvision's transforms so that a recipe written
 * for PyTorch means the same here:
 *
 *   hflip      RandomHorizontalFlip(p)
 *   rotate     RandomRotation(degrees, BILINEAR, fill): angle U(-d, d),
 *              counter-clockwise, about the image centre
 *   scale      RandomAffine(0, scale=(min, max), BILINEAR, fill)
 *   crop       RandomCrop(size, padding, fill): pad each side, take the
 *              h x w window at a uniform offset in [0, 2*padding]^2
 *   translate  RandomAffine(0, translate=(max, max), fill): whole pixels,
 *              round(U(-max*w, max*w)) across, then the same down with h
 *
 * Rotation and scaling are one inverse-mapped affine warp: each output
 * pixel centre is mapped back into the input and sampled bilinearly, a
 * neighbour outside the image reading `fill` (what torchvision's masked
 * grid_sample computes).  Where the map is the identity the sample lands
 * exactly on a pixel with weight 0 on its neighbours, so angle 0 and scale
 * 1 return the input bit for bit.  Crop and translation move whole pixels:
 * both are a shift with fill, exact by construction (a crop of the padded
 * image at offset (i, j) is the input shifted by (padding-i, padding-j)).
 *
 * Each type draws a fixed number of values from the example's generator
 * whatever it decides (a flip that does not happen still draws its
 * uniform), so the stream of one augmentation never depends on the
 * outcome of another.
 */
#include "cnnrt.h"
#include "augment.h"

#include <math.h>
#include <string.h>

/* ---- the deterministic transforms ------------------------------------------- */

void cnn_aug_hflip(float *x, int c, int h, int w)
{
    for (int64_t row = 0; row < (int64_t)c * h; row++) {
        float *p = x + row * w;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            float t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
    }
}

/* Output pixel (y, x) samples the input at centre + m * ((y, x) - centre),
 * m = {{myy, myx}, {mxy, mxx}}, bilinearly with fill outside. */
static void warp(float *x, int c, int h, int w, const double m[2][2], float fill,
                 float *scratch)
{
    size_t plane = (size_t)h * (size_t)w;
    memcpy(scratch, x, (size_t)c * plane * sizeof *x);
    double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
    for (int y = 0; y < h; y++) {
        for (int xo = 0; xo < w; xo++) {
            double dy = y - cy, dx = xo - cx;
            double sy = cy + m[0][0] * dy + m[0][1] * dx;
            double sx = cx + m[1][0] * dy + m[1][1] * dx;
            size_t at = (size_t)y * w + (size_t)xo;
            if (!(sy > -1.0 && sy < h && sx > -1.0 && sx < w)) { /* NaN lands here too */
                for (int ch = 0; ch < c; ch++)
                    x[ch * plane + at] = fill;
                continue;
            }
            int y0 = (int)floor(sy), x0 = (int)floor(sx);
            float fy = (float)(sy - y0), fx = (float)(sx - x0);
            int in_y0 = y0 >= 0, in_y1 = y0 + 1 < h, in_x0 = x0 >= 0, in_x1 = x0 + 1 < w;
            int64_t i00 = (int64_t)y0 * w + x0; /* read only where inside */
            for (int ch = 0; ch < c; ch++) {
                const float *p = scratch + ch * plane;
                float v00 = in_y0 && in_x0 ? p[i00] : fill;
                float v01 = in_y0 && in_x1 ? p[i00 + 1] : fill;
                float v10 = in_y1 && in_x0 ? p[i00 + w] : fill;
                float v11 = in_y1 && in_x1 ? p[i00 + w + 1] : fill;
                float top = v00 + fx * (v01 - v00), bottom = v10 + fx * (v11 - v10);
                x[ch * plane + at] = top + fy * (bottom - top);
            }
        }
    }
}

void cnn_aug_rotate(float *x, int c, int h, int w, double degrees, float fill, float *scratch)
{
    if (degrees == 0)
        return;
    /* Counter-clockwise on screen, where y points down: the output pixel at
     * offset (dy, dx) comes from the input offset rotated back. */
    double a = degrees * (M_PI / 180.0), cs = cos(a), sn = sin(a);
    const double m[2][2] = {{cs, sn}, {-sn, cs}};
    warp(x, c, h, w, m, fill, scratch);
}

void cnn_aug_zoom(float *x, int c, int h, int w, double factor, float fill, float *scratch)
{
    if (factor == 1 || !(factor > 0))
        return;
    const double m[2][2] = {{1 / factor, 0}, {0, 1 / factor}};
    warp(x, c, h, w, m, fill, scratch);
}

/* Write n samples of `from` (stride 1) shifted right by dx into `to`. */
static void shift_row(float *to, const float *from, int n, int dx, float fill)
{
    for (int i = 0; i < n; i++) {
        int s = i - dx;
        to[i] = s >= 0 && s < n ? from[s] : fill;
    }
}

void cnn_aug_shift(float *x, int c, int h, int w, int dy, int dx, float fill, float *scratch)
{
    if (dy == 0 && dx == 0)
        return;
    /* Beyond the image everything is fill; clamping keeps i - d from overflowing. */
    dy = dy > h ? h : dy < -h ? -h : dy;
    dx = dx > w ? w : dx < -w ? -w : dx;
    size_t plane = (size_t)h * (size_t)w;
    memcpy(scratch, x, (size_t)c * plane * sizeof *x);
    for (int ch = 0; ch < c; ch++) {
        for (int y = 0; y < h; y++) {
            float *to = x + ch * plane + (size_t)y * w;
            int sy = y - dy;
            if (sy < 0 || sy >= h) {
                for (int i = 0; i < w; i++)
                    to[i] = fill;
                continue;
            }
            shift_row(to, scratch + ch * plane + (size_t)sy * w, w, dx, fill);
        }
    }
}

/* ---- random augmentation ------------------------------------------------------ */

static void apply_hflip(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                        float *scratch)
{
    (void)scratch;
    if (cnn_rng_uniform(r) < a->p)
        cnn_aug_hflip(x, c, h, w);
}

static void apply_rotate(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                         float *scratch)
{
    double angle = a->degrees * (2 * cnn_rng_uniform(r) - 1);
    cnn_aug_rotate(x, c, h, w, angle, (float)a->fill, scratch);
}

static void apply_scale(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                        float *scratch)
{
    double factor = a->min + (a->max - a->min) * cnn_rng_uniform(r);
    cnn_aug_zoom(x, c, h, w, factor, (float)a->fill, scratch);
}

static void apply_crop(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                       float *scratch)
{
    int pad = a->padding > 0 ? a->padding : 0;
    int top = (int)cnn_rng_below(r, 2 * (uint64_t)pad + 1);
    int left = (int)cnn_rng_below(r, 2 * (uint64_t)pad + 1);
    cnn_aug_shift(x, c, h, w, pad - top, pad - left, (float)a->fill, scratch);
}

/* round(U(-max, max)) as an int, clamped to +-limit (beyond it all is fill). */
static int draw_offset(cnn_rng *r, double max, int limit)
{
    double v = round(max * (2 * cnn_rng_uniform(r) - 1));
    return v > limit ? limit : v < -limit ? -limit : (int)v;
}

static void apply_translate(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                            float *scratch)
{
    int dx = draw_offset(r, a->max * w, w); /* torchvision draws across first */
    int dy = draw_offset(r, a->max * h, h);
    cnn_aug_shift(x, c, h, w, dy, dx, (float)a->fill, scratch);
}

typedef void (*augment_fn)(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                           float *scratch);

static const augment_fn apply_fns[] = {
    [CNN_AUG_HFLIP] = apply_hflip,   [CNN_AUG_ROTATE] = apply_rotate,
    [CNN_AUG_SCALE] = apply_scale,   [CNN_AUG_CROP] = apply_crop,
    [CNN_AUG_TRANSLATE] = apply_translate,
};

void cnn_augment_apply(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                       float *scratch)
{
    if (a->type >= 0 && (size_t)a->type < sizeof apply_fns / sizeof apply_fns[0] &&
        apply_fns[a->type] && c > 0 && h > 0 && w > 0)
        apply_fns[a->type](a, x, c, h, w, r, scratch);
}
