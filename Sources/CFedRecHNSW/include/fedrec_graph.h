#ifndef FEDREC_GRAPH_H
#define FEDREC_GRAPH_H

// A hand-written HNSW graph (Malkov & Yashunin 2018) over inner product, in C so the hot loops are compiled with
// -O3 in every build configuration and the d-dimensional dot products run on AVX2+FMA when the CPU has them
// (runtime dispatch, portable fallback). The Swift wrapper is FedRecRecall's `HNSWIndex`.
//
// Every function that can fail returns FEDREC_GRAPH_OK (0) or a non-zero code; `fedrec_graph_import` also writes a
// NUL-terminated message (truncated to `error_capacity` bytes).

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An HNSW graph with its vectors (row-major, copied in). Opaque. Searches may run concurrently with each other,
/// never with `fedrec_graph_add` on the same graph.
typedef struct fedrec_graph fedrec_graph;

enum {
    FEDREC_GRAPH_OK = 0,
    FEDREC_GRAPH_INVALID_ARGUMENT = 1,
    FEDREC_GRAPH_OUT_OF_MEMORY = 2,
    FEDREC_GRAPH_CORRUPT = 3,
};

/// The highest level a node may have (levels are drawn with P(level >= l) = M^-l, so this is never reached in
/// practice; it bounds what a file may claim).
#define FEDREC_GRAPH_MAX_LEVEL 24

/// The largest M (lists live on the stack while links are chosen).
#define FEDREC_GRAPH_MAX_M 2048
/// Largest search breadth (`ef`, `ef_construction`) and result count `k`: keeps the scratch sizes' int
/// arithmetic far from overflow.
#define FEDREC_GRAPH_MAX_BREADTH (1 << 24)

/// An empty graph. `m` in 2...FEDREC_GRAPH_MAX_M (links per node on the upper levels, 2m on level 0), `ef_construction` >= 1,
/// `dimension` >= 1; `seed` draws the levels (node i's level depends only on seed and i).
int fedrec_graph_create(int dimension, int m, int ef_construction, uint64_t seed, fedrec_graph **out);

/// Inserts `count` row-major vectors (`count x dimension`); their ids continue from the current count. Single
/// threaded. On failure the graph holds the vectors inserted before the failing one.
int fedrec_graph_add(fedrec_graph *graph, const float *vectors, int64_t count);

/// The best `k` items by inner product of each of `query_count` row-major queries. `ef` is the search breadth
/// (beam width on level 0); the `k` results are the best of every item scored, so `ef < k` is allowed. Writes
/// `query_count x k` labels (-1 past the found items) and scores (-infinity there), best first.
int fedrec_graph_search(const fedrec_graph *graph, const float *queries, int64_t query_count, int k, int ef,
                       int32_t *labels, float *scores);

/// A deep copy (vectors and links).
int fedrec_graph_clone(const fedrec_graph *graph, fedrec_graph **out);

void fedrec_graph_free(fedrec_graph *graph);

int64_t fedrec_graph_count(const fedrec_graph *graph);
int fedrec_graph_dimension(const fedrec_graph *graph);
int fedrec_graph_m(const fedrec_graph *graph);
int fedrec_graph_ef_construction(const fedrec_graph *graph);
uint64_t fedrec_graph_seed(const fedrec_graph *graph);
/// The entry point (-1 when empty) and its level.
int32_t fedrec_graph_entry_point(const fedrec_graph *graph);
/// Sum over nodes of their level: the number of upper-level link lists.
int64_t fedrec_graph_upper_list_count(const fedrec_graph *graph);

/// Copies the graph out: `vectors` (count x dimension), `levels` (count), `links0` (count x 2m) and `upper`
/// (upper_list_count x m; node by node in id order, levels 1...level(node)); lists padded with -1.
void fedrec_graph_export(const fedrec_graph *graph, float *vectors, int32_t *levels, int32_t *links0,
                        int32_t *upper);

/// Rebuilds a graph from `fedrec_graph_export`'s arrays after validating them (levels in range, the entry point on
/// the top level, every list a prefix of ids in range, not the node itself, and on level l only nodes whose level
/// is >= l, then -1 padding): FEDREC_GRAPH_CORRUPT with a message otherwise, so a damaged file never makes a search
/// read out of bounds.
int fedrec_graph_import(int dimension, int m, int ef_construction, uint64_t seed, int64_t count, const float *vectors,
                       const int32_t *levels, const int32_t *links0, const int32_t *upper, int64_t upper_list_count,
                       int32_t entry_point, fedrec_graph **out, char *error, size_t error_capacity);

/// "avx2+fma" or "portable": the dot-product kernels this CPU runs.
const char *fedrec_graph_kernel_name(void);

/// FNV-1a 64 over 64-bit words: starting from `hash`, each float's bit pattern (as a 64-bit word) is XORed in,
/// then multiplied by the FNV prime. `MatrixFingerprint` uses it.
uint64_t fedrec_graph_fingerprint_floats(uint64_t hash, const float *values, int64_t count);
/// The same over 32-bit integers (each bit pattern zero-extended to 64 bits).
uint64_t fedrec_graph_fingerprint_ints(uint64_t hash, const int32_t *values, int64_t count);

#ifdef __cplusplus
}
#endif

#endif
