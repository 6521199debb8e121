/* A shifted test set for the Laplace predictives (tests/cli/test_laplace.sh):
 *
 *   shift_images IMAGES LABELS N DEGREES OUT_X.npy OUT_Y.npy
 *
 * The first N images of IMAGES (a data SPEC, e.g. idx:t10k-images-idx3-ubyte.gz,
 * [n, H, W]) rotated by DEGREES counter-clockwise about the image centre,
 * bilinear, zero outside the image, into OUT_X.npy (float64, [N, H, W], the
 * pixel values' scale kept), and their labels into OUT_Y.npy (int64 [N]).
 * Deterministic: the same input and angle give the same bytes.  A helper
 * for the tests, not a TAP test. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/readers.h"

/* int64 [n] as a version 1.0 .npy (the header padded to 64 bytes). */
static int write_npy_i64(const char *path, const int64_t *v, int64_t n)
{
    char dict[128];
    int len = snprintf(dict, sizeof dict, "{'descr': '<i8', 'fortran_order': False, 'shape': (%lld,), }", (long long)n);
    size_t pad = (64 - (10 + (size_t)len + 1) % 64) % 64;
    uint16_t hlen = (uint16_t)((size_t)len + pad + 1);
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                              (unsigned char)(hlen >> 8)};
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = fwrite(head, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)len, f) != (size_t)len;
    for (size_t i = 0; i < pad && !bad; i++)
        bad = fputc(' ', f) == EOF;
    bad = bad || fputc('\n', f) == EOF || fwrite(v, sizeof *v, (size_t)n, f) != (size_t)n; /* little-endian host */
    return fclose(f) != 0 || bad ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: shift_images IMAGES LABELS N DEGREES OUT_X.npy OUT_Y.npy\n");
        return 2;
    }
    cs_err err = {0};
    cs_tensor x, y;
    memset(&x, 0, sizeof x), memset(&y, 0, sizeof y);
    long long want = atoll(argv[3]);
    double angle = atof(argv[4]) * M_PI / 180;
    if (cs_data_read_spec(argv[1], "data", &x, &err) || cs_data_read_spec(argv[2], "labels", &y, &err)) {
        fprintf(stderr, "shift_images: %s\n", err.msg);
        cs_tensor_free(&x), cs_tensor_free(&y);
        return 1;
    }
    int rc = 1;
    if (x.ndim != 3 || y.ndim != 1 || y.dims[0] != x.dims[0] || want < 1 || want > x.dims[0]) {
        fprintf(stderr, "shift_images: need [n, H, W] images, n labels and 1 <= N <= n\n");
        goto done;
    }
    int64_t n = want, H = x.dims[1], W = x.dims[2], hw = H * W;
    double *out = malloc(sizeof *out * (size_t)(n * hw));
    int64_t *lab = malloc(sizeof *lab * (size_t)n);
    if (out && lab) {
        double cy = 0.5 * (double)(H - 1), cx = 0.5 * (double)(W - 1), c = cos(angle), s = sin(angle);
        for (int64_t i = 0; i < n; i++) {
            lab[i] = (int64_t)cs_tensor_get_f64(&y, i);
            for (int64_t r = 0; r < H; r++)
                for (int64_t q = 0; q < W; q++) {
                    /* the source point of output pixel (r, q): the inverse rotation */
                    double dy = (double)r - cy, dx = (double)q - cx;
                    double sy = cy + c * dy - s * dx, sx = cx + s * dy + c * dx;
                    int64_t y0 = (int64_t)floor(sy), x0 = (int64_t)floor(sx);
                    double fy = sy - (double)y0, fx = sx - (double)x0, v = 0;
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) {
                            int64_t yy = y0 + a, xx = x0 + b;
                            if (yy >= 0 && yy < H && xx >= 0 && xx < W)
                                v += (a ? fy : 1 - fy) * (b ? fx : 1 - fx) *
                                     cs_tensor_get_f64(&x, i * hw + yy * W + xx);
                        }
                    out[i * hw + r * W + q] = v;
                }
        }
        int64_t dims[3] = {n, H, W};
        if (cs_write_npy_f64(argv[5], out, 3, dims, &err))
            fprintf(stderr, "shift_images: %s\n", err.msg);
        else if (write_npy_i64(argv[6], lab, n))
            fprintf(stderr, "shift_images: cannot write %s\n", argv[6]);
        else
            rc = 0;
    }
    free(out), free(lab);
done:
    cs_tensor_free(&x), cs_tensor_free(&y);
    return rc;
}
