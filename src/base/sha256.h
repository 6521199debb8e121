/* SHA-256 (FIPS 180-4), used to record which model file a run analysed.
 *
 * The streaming interface hashes data in pieces of any size; cs_sha256_file
 * hashes a whole file into the 64 lowercase hex digits that sha256sum
 * prints. */
#ifndef CS_BASE_SHA256_H
#define CS_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define CS_SHA256_DIGEST_BYTES 32
#define CS_SHA256_HEX_CHARS 64 /* plus one for the terminating NUL */

typedef struct cs_sha256 {
    uint32_t h[8];          /* hash state H0..H7 */
    uint64_t n_bytes;       /* message length so far */
    unsigned char block[64];
    size_t n_block;         /* bytes waiting in block */
} cs_sha256;

void cs_sha256_init(cs_sha256 *c);
/* Hashes n more bytes of data (borrowed). */
void cs_sha256_update(cs_sha256 *c, const void *data, size_t n);
/* Pads, writes the digest and leaves c to be initialised again. */
void cs_sha256_final(cs_sha256 *c, unsigned char digest[CS_SHA256_DIGEST_BYTES]);

/* digest -> 64 lowercase hex digits and a NUL. */
void cs_sha256_hex(const unsigned char digest[CS_SHA256_DIGEST_BYTES],
                   char hex[CS_SHA256_HEX_CHARS + 1]);

/* SHA-256 of the file at path as lowercase hex; CS_ERR_IO naming the path
 * when it cannot be opened or read (a directory included). */
cs_status cs_sha256_file(const char *path, char hex[CS_SHA256_HEX_CHARS + 1],
                         cs_err *err) CS_MUST_CHECK;

#endif
