/*
 * augment.h — the deterministic image transforms behind cnn_augment_apply
 * (augment.c), shared with the runtime's tests so that a transform can be
 * checked at a chosen angle or offset.  Not installed.
 *
 * Each works in place on one example of c planes of h x w floats; scratch
 * holds c*h*w floats.  Pixels are addressed by their centres at integer
 * (y, x); the centre of the image is ((h-1)/2, (w-1)/2).  Samples from
 * outside the image read `fill`.
 */
#ifndef CNNRT_AUGMENT_H
#define CNNRT_AUGMENT_H

/* Mirror left-right. */
void cnn_aug_hflip(float *x, int c, int h, int w);

/* Rotate by `degrees` counter-clockwise as seen on screen (torchvision's
 * sense) about the centre, bilinear.  0 is the identity, exactly. */
void cnn_aug_rotate(float *x, int c, int h, int w, double degrees, float fill, float *scratch);

/* Zoom by `factor` about the centre (> 1 enlarges), bilinear.  1 is the
 * identity, exactly; a factor <= 0 leaves x unchanged. */
void cnn_aug_zoom(float *x, int c, int h, int w, double factor, float fill, float *scratch);

/* Move the content down by dy and right by dx whole pixels:
 * out(y, x) = in(y - dy, x - dx), or fill where that is outside. */
void cnn_aug_shift(float *x, int c, int h, int w, int dy, int dx, float fill, float *scratch);

#endif
