#ifndef FEDREC_FAISS_H
#define FEDREC_FAISS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An HNSW index over inner product (faiss IndexHNSWFlat, METRIC_INNER_PRODUCT). Opaque.
typedef struct fedrec_hnsw fedrec_hnsw;

/// Every function returns 0 on success, or a non-zero code with a NUL-terminated message in `error`
/// (at most `error_capacity` bytes, truncated): faiss exceptions never cross into Swift.
enum {
    FEDREC_FAISS_OK = 0,
    FEDREC_FAISS_INVALID_ARGUMENT = 1,
    FEDREC_FAISS_ERROR = 2,
    FEDREC_FAISS_OUT_OF_MEMORY = 3,
};

/// Sets the OpenMP thread count used by faiss (1: single thread).
void fedrec_faiss_set_threads(int threads);

/// Builds an index of `count` row-major vectors of `dimension` floats (`vectors` is `count x dimension`).
int fedrec_hnsw_build(const float *vectors, int64_t count, int dimension, int m, int ef_construction,
                      fedrec_hnsw **out, char *error, size_t error_capacity);

/// Appends `count` vectors (ids continue from the current size).
int fedrec_hnsw_add(fedrec_hnsw *index, const float *vectors, int64_t count, char *error, size_t error_capacity);

/// Top-`k` by inner product for `query_count` queries; writes `query_count x k` labels (-1 when fewer) and scores.
int fedrec_hnsw_search(const fedrec_hnsw *index, const float *queries, int64_t query_count, int k, int ef_search,
                       int64_t *labels, float *scores, char *error, size_t error_capacity);

int64_t fedrec_hnsw_count(const fedrec_hnsw *index);
int fedrec_hnsw_dimension(const fedrec_hnsw *index);
/// The build parameter M of the index.
int fedrec_hnsw_m(const fedrec_hnsw *index);

/// Serialises the index into a malloc'ed buffer (free it with `fedrec_faiss_free_buffer`).
int fedrec_hnsw_serialize(const fedrec_hnsw *index, uint8_t **bytes, size_t *length, char *error,
                          size_t error_capacity);
void fedrec_faiss_free_buffer(uint8_t *bytes);

/// Reads an index serialised by `fedrec_hnsw_serialize`; rejects anything but an inner-product IndexHNSWFlat.
int fedrec_hnsw_deserialize(const uint8_t *bytes, size_t length, fedrec_hnsw **out, char *error,
                            size_t error_capacity);

void fedrec_hnsw_free(fedrec_hnsw *index);

#ifdef __cplusplus
}
#endif

#endif
