// HNSW over inner product (Malkov & Yashunin 2018, "Efficient and robust approximate nearest neighbor search using
// Hierarchical Navigable Small World graphs"): Algorithm 1 (insert), 2 (search a layer), 4 (heuristic neighbour
// selection, without candidate extension or kept pruned connections), 5 (k-NN search).
//
// "Distance" below is the negated inner product, so smaller is closer; for unit vectors it orders like L2.
//
// Layout and invariants:
// - vectors: count x d floats, row-major, 64-byte aligned.
// - links0: count x (1 + 2m) int32: [n, id_1 ... id_n, unused...]; 0 <= n <= 2m; ids in [0, count), not the node.
// - upper[i]: NULL when levels[i] == 0, else levels[i] x (1 + m) int32, list for level l at (l - 1) * (1 + m);
//   a node on level l links only to nodes whose level is >= l.
// - entry: a node of level max_level (-1 when the graph is empty).
// - Search scratch (visited stamps, heaps) comes from a mutex-protected pool, so searches may run concurrently;
//   the visited set is a generation-stamped uint16 array, cleared only when the stamp wraps.
#include "fedrec_graph.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FEDREC_X86 1
#endif

// MARK: - Dot-product kernels

typedef void (*dot_batch_fn)(const float *q, const float *base, int d, const int32_t *ids, int n, float *out);
typedef float (*dot_fn)(const float *a, const float *b, int d);

static float dot_portable(const float *a, const float *b, int d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int j = 0;
    for (; j + 4 <= d; j += 4) {
        s0 += a[j] * b[j];
        s1 += a[j + 1] * b[j + 1];
        s2 += a[j + 2] * b[j + 2];
        s3 += a[j + 3] * b[j + 3];
    }
    for (; j < d; j++) s0 += a[j] * b[j];
    return (s0 + s1) + (s2 + s3);
}

static void dot_batch_portable(const float *q, const float *base, int d, const int32_t *ids, int n, float *out) {
    for (int i = 0; i < n; i++) out[i] = dot_portable(q, base + (int64_t)ids[i] * d, d);
}

#ifdef FEDREC_X86
__attribute__((target("avx2,fma"))) static inline float hsum_avx2(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 shuf = _mm_movehdup_ps(lo);
    __m128 sums = _mm_add_ps(lo, shuf);
    shuf = _mm_movehl_ps(shuf, sums);
    return _mm_cvtss_f32(_mm_add_ss(sums, shuf));
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
    }
    for (; j + 8 <= d; j += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
    float s = hsum_avx2(_mm256_add_ps(s0, s1));
    for (; j < d; j++) s += a[j] * b[j];
    return s;
}

/// d = 64: the query stays in eight registers; each item is eight fused multiply-adds over four chains.
__attribute__((target("avx2,fma"))) static void dot_batch_avx2(const float *q, const float *base, int d,
                                                               const int32_t *ids, int n, float *out) {
    if (d == 64) {
        const __m256 q0 = _mm256_loadu_ps(q), q1 = _mm256_loadu_ps(q + 8), q2 = _mm256_loadu_ps(q + 16),
                     q3 = _mm256_loadu_ps(q + 24), q4 = _mm256_loadu_ps(q + 32), q5 = _mm256_loadu_ps(q + 40),
                     q6 = _mm256_loadu_ps(q + 48), q7 = _mm256_loadu_ps(q + 56);
        for (int i = 0; i < n; i++) {
            const float *v = base + (int64_t)ids[i] * 64;
            __m256 a0 = _mm256_mul_ps(q0, _mm256_load_ps(v));
            __m256 a1 = _mm256_mul_ps(q1, _mm256_load_ps(v + 8));
            __m256 a2 = _mm256_mul_ps(q2, _mm256_load_ps(v + 16));
            __m256 a3 = _mm256_mul_ps(q3, _mm256_load_ps(v + 24));
            a0 = _mm256_fmadd_ps(q4, _mm256_load_ps(v + 32), a0);
            a1 = _mm256_fmadd_ps(q5, _mm256_load_ps(v + 40), a1);
            a2 = _mm256_fmadd_ps(q6, _mm256_load_ps(v + 48), a2);
            a3 = _mm256_fmadd_ps(q7, _mm256_load_ps(v + 56), a3);
            out[i] = hsum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        }
        return;
    }
    for (int i = 0; i < n; i++) out[i] = dot_avx2(q, base + (int64_t)ids[i] * d, d);
}
#endif

typedef struct {
    dot_fn dot;
    dot_batch_fn dot_batch;
    const char *name;
} kernels;

static kernels select_kernels(void) {
#ifdef FEDREC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (kernels){dot_avx2, dot_batch_avx2, "avx2+fma"};
#endif
    return (kernels){dot_portable, dot_batch_portable, "portable"};
}

static kernels kernel_table;
static pthread_once_t kernel_once = PTHREAD_ONCE_INIT;
static void init_kernels(void) { kernel_table = select_kernels(); }
static const kernels *get_kernels(void) {
    pthread_once(&kernel_once, init_kernels);
    return &kernel_table;
}

const char *fedrec_graph_kernel_name(void) { return get_kernels()->name; }

// MARK: - Heaps of (distance, id)

typedef struct {
    float d;
    int32_t id;
} pair;

/// Max-heap by d (root = farthest): the beam and the top-k.
static inline void max_push(pair *h, int *n, pair p) {
    int i = (*n)++;
    while (i > 0) {
        int parent = (i - 1) >> 1;
        if (h[parent].d >= p.d) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = p;
}

static inline void max_pop(pair *h, int *n) {
    pair last = h[--(*n)];
    int size = *n, i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && h[c + 1].d > h[c].d) c++;
        if (last.d >= h[c].d) break;
        h[i] = h[c];
        i = c;
    }
    if (size > 0) h[i] = last;
}

/// Min-heap by d (root = closest): the candidates.
static inline void min_push(pair *h, int *n, pair p) {
    int i = (*n)++;
    while (i > 0) {
        int parent = (i - 1) >> 1;
        if (h[parent].d <= p.d) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = p;
}

static inline void min_pop(pair *h, int *n) {
    pair last = h[--(*n)];
    int size = *n, i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && h[c + 1].d < h[c].d) c++;
        if (last.d <= h[c].d) break;
        h[i] = h[c];
        i = c;
    }
    if (size > 0) h[i] = last;
}

// MARK: - Scratch

typedef struct scratch {
    uint16_t *visited;
    int64_t visited_capacity;
    uint16_t stamp;
    pair *candidates;
    int candidate_capacity;
    pair *beam;
    int beam_capacity;
    pair *top;
    int top_capacity;
    pair *sorted;
    int sorted_capacity;
    int32_t *ids;
    float *dots;
    int batch_capacity;
    int failed;
    struct scratch *next;
} scratch;

static void scratch_free(scratch *s) {
    if (s == NULL) return;
    free(s->visited);
    free(s->candidates);
    free(s->beam);
    free(s->top);
    free(s->sorted);
    free(s->ids);
    free(s->dots);
    free(s);
}

static int grow_pairs(pair **array, int *capacity, int needed) {
    if (*capacity >= needed) return 1;
    if (needed < 0 || needed > (1 << 29)) return 0; /* callers bound ef, k and lists far below this */
    int target = *capacity > 0 ? *capacity : 64;
    while (target < needed) target *= 2;
    pair *grown = realloc(*array, (size_t)target * sizeof(pair));
    if (grown == NULL) return 0;
    *array = grown;
    *capacity = target;
    return 1;
}

/// Makes room for a search of `count` nodes with breadth `ef`, `k` results and lists of up to `list` links.
static int scratch_reserve(scratch *s, int64_t count, int ef, int k, int list) {
    if (s->visited_capacity < count) {
        int64_t target = count + count / 2 + 1024;
        uint16_t *v = calloc((size_t)target, sizeof(uint16_t));
        if (v == NULL) return 0;
        free(s->visited);
        s->visited = v;
        s->visited_capacity = target;
        s->stamp = 0;
    }
    if (!grow_pairs(&s->beam, &s->beam_capacity, ef + 2)) return 0;
    if (!grow_pairs(&s->top, &s->top_capacity, k + 2)) return 0;
    if (!grow_pairs(&s->candidates, &s->candidate_capacity, ef + list + 2)) return 0;
    int sorted = (ef > k ? ef : k) + list + 2;
    if (!grow_pairs(&s->sorted, &s->sorted_capacity, sorted)) return 0;
    if (s->batch_capacity < list + 1) {
        int32_t *ids = realloc(s->ids, (size_t)(list + 1) * sizeof(int32_t));
        if (ids == NULL) return 0;
        s->ids = ids;
        float *dots = realloc(s->dots, (size_t)(list + 1) * sizeof(float));
        if (dots == NULL) return 0;
        s->dots = dots;
        s->batch_capacity = list + 1;
    }
    return 1;
}

/// A fresh visited generation (all nodes unvisited).
static inline void scratch_new_stamp(scratch *s) {
    s->stamp++;
    if (s->stamp == 0) {
        memset(s->visited, 0, (size_t)s->visited_capacity * sizeof(uint16_t));
        s->stamp = 1;
    }
}

typedef struct {
    pthread_mutex_t lock;
    scratch *free_list;
} scratch_pool;

// MARK: - Graph

struct fedrec_graph {
    int d, m, m0, ef_construction;
    uint64_t seed;
    double level_scale;
    int64_t count, capacity;
    float *vectors;
    int32_t *links0;
    int32_t *levels;
    int32_t **upper;
    int32_t entry;
    int max_level;
    scratch *build;
    scratch_pool *pool;
    const kernels *k;
};

static inline int stride0(const fedrec_graph *g) { return 1 + g->m0; }

static inline const float *vector_of(const fedrec_graph *g, int64_t id) { return g->vectors + id * g->d; }

static inline int32_t *links_of(const fedrec_graph *g, int32_t id, int level) {
    if (level == 0) return g->links0 + (int64_t)id * stride0(g);
    return g->upper[id] + (int64_t)(level - 1) * (1 + g->m);
}

static inline void prefetch_vector(const fedrec_graph *g, int32_t id) {
    const char *p = (const char *)vector_of(g, id);
    int bytes = g->d * 4;
    for (int offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/// Node `id`'s level: floor(-ln(u) / ln(m)), u uniform in (0, 1] from (seed, id) only.
static int draw_level(const fedrec_graph *g, int64_t id) {
    uint64_t bits = splitmix64(g->seed ^ splitmix64((uint64_t)id));
    double u = ((double)(bits >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double level = -log(u) * g->level_scale;
    if (level >= FEDREC_GRAPH_MAX_LEVEL) return FEDREC_GRAPH_MAX_LEVEL;
    return (int)level;
}

static void *aligned_floats(int64_t count) {
    void *p = NULL;
    size_t bytes = (size_t)(count > 0 ? count : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return p;
}

static int reserve_nodes(fedrec_graph *g, int64_t needed) {
    if (g->capacity >= needed) return 1;
    int64_t target = g->capacity > 0 ? g->capacity : 1024;
    while (target < needed) target *= 2;
    float *vectors = aligned_floats(target * g->d);
    if (vectors == NULL) return 0;
    if (g->count > 0) memcpy(vectors, g->vectors, (size_t)(g->count * g->d) * sizeof(float));
    int32_t *links0 = realloc(g->links0, (size_t)(target * stride0(g)) * sizeof(int32_t));
    if (links0 == NULL) {
        free(vectors);
        return 0;
    }
    g->links0 = links0;
    int32_t *levels = realloc(g->levels, (size_t)target * sizeof(int32_t));
    if (levels == NULL) {
        free(vectors);
        return 0;
    }
    g->levels = levels;
    int32_t **upper = realloc(g->upper, (size_t)target * sizeof(int32_t *));
    if (upper == NULL) {
        free(vectors);
        return 0;
    }
    g->upper = upper;
    free(g->vectors);
    g->vectors = vectors;
    g->capacity = target;
    return 1;
}

static fedrec_graph *graph_new(int d, int m, int ef_construction, uint64_t seed) {
    fedrec_graph *g = calloc(1, sizeof(fedrec_graph));
    if (g == NULL) return NULL;
    g->d = d;
    g->m = m;
    g->m0 = 2 * m;
    g->ef_construction = ef_construction;
    g->seed = seed;
    g->level_scale = 1.0 / log((double)m);
    g->entry = -1;
    g->max_level = 0;
    g->k = get_kernels();
    g->build = calloc(1, sizeof(scratch));
    g->pool = calloc(1, sizeof(scratch_pool));
    if (g->build == NULL || g->pool == NULL || pthread_mutex_init(&g->pool->lock, NULL) != 0) {
        free(g->build);
        free(g->pool);
        free(g);
        return NULL;
    }
    return g;
}

void fedrec_graph_free(fedrec_graph *g) {
    if (g == NULL) return;
    if (g->upper != NULL)
        for (int64_t i = 0; i < g->count; i++) free(g->upper[i]);
    free(g->upper);
    free(g->vectors);
    free(g->links0);
    free(g->levels);
    scratch_free(g->build);
    scratch *s = g->pool->free_list;
    while (s != NULL) {
        scratch *next = s->next;
        scratch_free(s);
        s = next;
    }
    pthread_mutex_destroy(&g->pool->lock);
    free(g->pool);
    free(g);
}

int fedrec_graph_create(int dimension, int m, int ef_construction, uint64_t seed, fedrec_graph **out) {
    if (out == NULL) return FEDREC_GRAPH_INVALID_ARGUMENT;
    *out = NULL;
    if (dimension < 1 || m < 2 || m > FEDREC_GRAPH_MAX_M || ef_construction < 1 ||
        ef_construction > FEDREC_GRAPH_MAX_BREADTH)
        return FEDREC_GRAPH_INVALID_ARGUMENT;
    fedrec_graph *g = graph_new(dimension, m, ef_construction, seed);
    if (g == NULL) return FEDREC_GRAPH_OUT_OF_MEMORY;
    *out = g;
    return FEDREC_GRAPH_OK;
}

// MARK: - Search on one layer

/// Greedy descent on `level` (Algorithm 2 with ef = 1): moves `*current` to a local optimum.
static void greedy(const fedrec_graph *g, scratch *s, const float *q, int32_t *current, float *distance,
                   int level) {
    int changed = 1;
    while (changed) {
        changed = 0;
        const int32_t *list = links_of(g, *current, level);
        int n = list[0];
        g->k->dot_batch(q, g->vectors, g->d, list + 1, n, s->dots);
        for (int j = 0; j < n; j++) {
            float dd = -s->dots[j];
            if (dd < *distance) {
                *distance = dd;
                *current = list[1 + j];
                changed = 1;
            }
        }
    }
}

/// Algorithm 2 from one entry: leaves the best `ef` nodes found in `s->beam` (a max-heap of `*beam_n`), and when
/// `k > 0` the best `k` of every node scored in `s->top` (`*top_n`). Stops when the closest unexpanded candidate is
/// farther than the farthest of a full beam. Every neighbour list is gathered first (unvisited ids), its vectors
/// prefetched, then scored in one batch.
static void search_layer(const fedrec_graph *g, scratch *s, const float *q, int32_t entry, float entry_d, int ef,
                         int level, int k, int *beam_n, int *top_n) {
    scratch_new_stamp(s);
    uint16_t *visited = s->visited;
    const uint16_t stamp = s->stamp;
    pair *beam = s->beam, *top = s->top;
    int nc = 0, nb = 0, nt = 0;
    visited[entry] = stamp;
    min_push(s->candidates, &nc, (pair){entry_d, entry});
    max_push(beam, &nb, (pair){entry_d, entry});
    if (k > 0) max_push(top, &nt, (pair){entry_d, entry});
    float bound = entry_d;
    while (nc > 0) {
        pair c = s->candidates[0];
        if (c.d > bound && nb >= ef) break;
        min_pop(s->candidates, &nc);
        if (nc > 0) __builtin_prefetch(links_of(g, s->candidates[0].id, level), 0, 3);
        const int32_t *list = links_of(g, c.id, level);
        int n = list[0], u = 0;
        int32_t *ids = s->ids;
        for (int j = 1; j <= n; j++) {
            int32_t id = list[j];
            if (visited[id] == stamp) continue;
            visited[id] = stamp;
            ids[u++] = id;
            prefetch_vector(g, id);
        }
        if (u == 0) continue;
        g->k->dot_batch(q, g->vectors, g->d, ids, u, s->dots);
        // The candidate heap holds at most (pushes) entries; make room for this list's.
        if (nc + u + 1 > s->candidate_capacity) {
            if (!grow_pairs(&s->candidates, &s->candidate_capacity, nc + u + 1)) {
                s->failed = 1;
                break;
            }
        }
        for (int j = 0; j < u; j++) {
            float dd = -s->dots[j];
            if (nb < ef || dd < bound) {
                min_push(s->candidates, &nc, (pair){dd, ids[j]});
                max_push(beam, &nb, (pair){dd, ids[j]});
                if (nb > ef) max_pop(beam, &nb);
                bound = beam[0].d;
            }
            if (k > 0 && (nt < k || dd < top[0].d)) {
                max_push(top, &nt, (pair){dd, ids[j]});
                if (nt > k) max_pop(top, &nt);
            }
        }
    }
    *beam_n = nb;
    *top_n = nt;
}

/// Pops a max-heap of `n` into `out` closest first.
static void drain_sorted(pair *heap, int n, pair *out) {
    for (int j = n - 1; j >= 0; j--) {
        out[j] = heap[0];
        max_pop(heap, &n);
    }
}

// MARK: - Insertion

/// Algorithm 4 (simple form): walks `candidates` closest first and keeps one unless a kept node is closer to it
/// than it is to the base (`candidates[j].d`); stops at `limit` kept. Writes ids to `out`, returns their count.
static int select_neighbours(const fedrec_graph *g, const pair *candidates, int n, int limit, int32_t *out) {
    int kept = 0;
    for (int j = 0; j < n && kept < limit; j++) {
        const float *v = vector_of(g, candidates[j].id);
        int good = 1;
        for (int r = 0; r < kept; r++) {
            float between = -g->k->dot(v, vector_of(g, out[r]), g->d);
            if (between < candidates[j].d) {
                good = 0;
                break;
            }
        }
        if (good) out[kept++] = candidates[j].id;
    }
    return kept;
}

static void insertion_sort(pair *a, int n) {
    for (int i = 1; i < n; i++) {
        pair x = a[i];
        int j = i - 1;
        while (j >= 0 && a[j].d > x.d) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = x;
    }
}

/// Links `node` into `target`'s list on `level` (distance `d` between them): appended when there is room, else
/// the list plus `node` is re-selected with the heuristic.
static void add_backlink(fedrec_graph *g, scratch *s, int32_t target, int32_t node, float d, int level) {
    int32_t *list = links_of(g, target, level);
    int capacity = level == 0 ? g->m0 : g->m;
    int n = list[0];
    for (int j = 1; j <= n; j++)
        if (list[j] == node) return;
    if (n < capacity) {
        list[1 + n] = node;
        list[0] = n + 1;
        return;
    }
    pair *c = s->sorted;
    g->k->dot_batch(vector_of(g, target), g->vectors, g->d, list + 1, n, s->dots);
    for (int j = 0; j < n; j++) c[j] = (pair){-s->dots[j], list[1 + j]};
    c[n] = (pair){d, node};
    insertion_sort(c, n + 1);
    int32_t kept[n + 1];
    int count = select_neighbours(g, c, n + 1, capacity, kept);
    memcpy(list + 1, kept, (size_t)count * sizeof(int32_t));
    list[0] = count;
}

/// Algorithm 1 for node `id` (its vector already stored).
static int insert(fedrec_graph *g, int64_t id64) {
    int32_t id = (int32_t)id64;
    int level = draw_level(g, id);
    g->levels[id] = level;
    g->links0[(int64_t)id * stride0(g)] = 0;
    g->upper[id] = NULL;
    if (level > 0) {
        g->upper[id] = calloc((size_t)level * (size_t)(1 + g->m), sizeof(int32_t));
        if (g->upper[id] == NULL) return FEDREC_GRAPH_OUT_OF_MEMORY;
    }
    if (g->entry < 0) {
        g->entry = id;
        g->max_level = level;
        return FEDREC_GRAPH_OK;
    }
    scratch *s = g->build;
    if (!scratch_reserve(s, id64 + 1, g->ef_construction, 1, g->m0 + 1)) return FEDREC_GRAPH_OUT_OF_MEMORY;
    const float *q = vector_of(g, id);
    int32_t current = g->entry;
    float distance = -g->k->dot(q, vector_of(g, current), g->d);
    for (int l = g->max_level; l > level; l--) greedy(g, s, q, &current, &distance, l);
    // Every level's neighbours are chosen first and linked only once all searches succeeded: a search can run
    // out of memory (its candidate heap grows), and a node that fails must leave no back-link behind (it is not
    // counted, and its id is reused). The graph is the same as linking level by level: a level's search reads
    // that level's lists only.
    int top = level < g->max_level ? level : g->max_level;
    int32_t *chosen = malloc((size_t)(top + 1) * (size_t)g->m0 * sizeof(int32_t));
    float *chosen_distances = malloc((size_t)(top + 1) * (size_t)g->m0 * sizeof(float));
    int chosen_count[FEDREC_GRAPH_MAX_LEVEL + 1];
    if (chosen == NULL || chosen_distances == NULL) {
        free(chosen);
        free(chosen_distances);
        return FEDREC_GRAPH_OUT_OF_MEMORY;
    }
    for (int l = top; l >= 0; l--) {
        int nb = 0, nt = 0;
        search_layer(g, s, q, current, distance, g->ef_construction, l, 0, &nb, &nt);
        if (s->failed) {
            s->failed = 0;
            free(chosen);
            free(chosen_distances);
            return FEDREC_GRAPH_OUT_OF_MEMORY;
        }
        pair *found = s->sorted;
        drain_sorted(s->beam, nb, found);
        current = found[0].id;
        distance = found[0].d;
        // As faiss does: the new node links to every node found when they fit in its list (2m on level 0, m
        // above), and only a longer list is cut down with the heuristic. Denser level-0 lists cost more scores
        // per step but reach a given recall with a smaller breadth, and in less time overall.
        int limit = l == 0 ? g->m0 : g->m;
        int32_t *selected = chosen + (size_t)l * (size_t)g->m0;
        int count;
        if (nb <= limit) {
            count = nb;
            for (int j = 0; j < nb; j++) selected[j] = found[j].id;
        } else {
            count = select_neighbours(g, found, nb, limit, selected);
        }
        // select_neighbours wrote ids only, in `found` order; keep their distances for the back-links.
        float *distances = chosen_distances + (size_t)l * (size_t)g->m0;
        for (int j = 0, f = 0; j < count; j++) {
            while (found[f].id != selected[j]) f++;
            distances[j] = found[f].d;
        }
        chosen_count[l] = count;
    }
    // add_backlink allocates nothing (its scratch was reserved above).
    for (int l = top; l >= 0; l--) {
        const int32_t *selected = chosen + (size_t)l * (size_t)g->m0;
        const float *distances = chosen_distances + (size_t)l * (size_t)g->m0;
        int count = chosen_count[l];
        int32_t *list = links_of(g, id, l);
        memcpy(list + 1, selected, (size_t)count * sizeof(int32_t));
        list[0] = count;
        for (int j = 0; j < count; j++) add_backlink(g, s, selected[j], id, distances[j], l);
    }
    free(chosen);
    free(chosen_distances);
    if (level > g->max_level) {
        g->max_level = level;
        g->entry = id;
    }
    return FEDREC_GRAPH_OK;
}

int fedrec_graph_add(fedrec_graph *g, const float *vectors, int64_t count) {
    if (g == NULL || count < 0 || (count > 0 && vectors == NULL)) return FEDREC_GRAPH_INVALID_ARGUMENT;
    if (count == 0) return FEDREC_GRAPH_OK;
    if (g->count + count > INT32_MAX) return FEDREC_GRAPH_INVALID_ARGUMENT;
    if (!reserve_nodes(g, g->count + count)) return FEDREC_GRAPH_OUT_OF_MEMORY;
    memcpy(g->vectors + g->count * g->d, vectors, (size_t)(count * g->d) * sizeof(float));
    for (int64_t i = 0; i < count; i++) {
        int status = insert(g, g->count);
        if (status != FEDREC_GRAPH_OK) {
            // The failed node is not part of the graph (not counted, never the entry point; back-links are added only
            // after every allocation succeeded), so dropping its block is enough.
            free(g->upper[g->count]);
            g->upper[g->count] = NULL;
            return status;
        }
        g->count++;
    }
    return FEDREC_GRAPH_OK;
}

// MARK: - Search

static scratch *acquire(const fedrec_graph *g) {
    scratch_pool *pool = g->pool;
    pthread_mutex_lock(&pool->lock);
    scratch *s = pool->free_list;
    if (s != NULL) pool->free_list = s->next;
    pthread_mutex_unlock(&pool->lock);
    if (s == NULL) s = calloc(1, sizeof(scratch));
    return s;
}

static void release(const fedrec_graph *g, scratch *s) {
    scratch_pool *pool = g->pool;
    pthread_mutex_lock(&pool->lock);
    s->next = pool->free_list;
    pool->free_list = s;
    pthread_mutex_unlock(&pool->lock);
}

int fedrec_graph_search(const fedrec_graph *g, const float *queries, int64_t query_count, int k, int ef,
                       int32_t *labels, float *scores) {
    if (g == NULL || query_count < 0 || k < 1 || ef < 1 || k > FEDREC_GRAPH_MAX_BREADTH ||
        ef > FEDREC_GRAPH_MAX_BREADTH || labels == NULL || scores == NULL ||
        (query_count > 0 && queries == NULL))
        return FEDREC_GRAPH_INVALID_ARGUMENT;
    for (int64_t i = 0; i < query_count * k; i++) {
        labels[i] = -1;
        scores[i] = -INFINITY;
    }
    if (g->count == 0 || query_count == 0) return FEDREC_GRAPH_OK;
    scratch *s = acquire(g);
    if (s == NULL) return FEDREC_GRAPH_OUT_OF_MEMORY;
    if (!scratch_reserve(s, g->count, ef, k, g->m0 + 1)) {
        release(g, s);
        return FEDREC_GRAPH_OUT_OF_MEMORY;
    }
    int status = FEDREC_GRAPH_OK;
    for (int64_t qi = 0; qi < query_count; qi++) {
        const float *q = queries + qi * g->d;
        int32_t current = g->entry;
        float distance = -g->k->dot(q, vector_of(g, current), g->d);
        for (int l = g->max_level; l > 0; l--) greedy(g, s, q, &current, &distance, l);
        int nb = 0, nt = 0;
        int separate = ef < k;
        search_layer(g, s, q, current, distance, ef, 0, separate ? k : 0, &nb, &nt);
        if (s->failed) {
            s->failed = 0;
            status = FEDREC_GRAPH_OUT_OF_MEMORY;
            break;
        }
        int n = separate ? nt : nb;
        drain_sorted(separate ? s->top : s->beam, n, s->sorted);
        if (n > k) n = k;
        for (int j = 0; j < n; j++) {
            labels[qi * k + j] = s->sorted[j].id;
            scores[qi * k + j] = -s->sorted[j].d;
        }
    }
    release(g, s);
    return status;
}

// MARK: - Accessors, copy, export and import

int64_t fedrec_graph_count(const fedrec_graph *g) { return g == NULL ? 0 : g->count; }
int fedrec_graph_dimension(const fedrec_graph *g) { return g == NULL ? 0 : g->d; }
int fedrec_graph_m(const fedrec_graph *g) { return g == NULL ? 0 : g->m; }
int fedrec_graph_ef_construction(const fedrec_graph *g) { return g == NULL ? 0 : g->ef_construction; }
uint64_t fedrec_graph_seed(const fedrec_graph *g) { return g == NULL ? 0 : g->seed; }
int32_t fedrec_graph_entry_point(const fedrec_graph *g) { return g == NULL ? -1 : g->entry; }

int64_t fedrec_graph_upper_list_count(const fedrec_graph *g) {
    if (g == NULL) return 0;
    int64_t total = 0;
    for (int64_t i = 0; i < g->count; i++) total += g->levels[i];
    return total;
}

void fedrec_graph_export(const fedrec_graph *g, float *vectors, int32_t *levels, int32_t *links0,
                        int32_t *upper) {
    int64_t n = g->count;
    if (n == 0) return;
    memcpy(vectors, g->vectors, (size_t)(n * g->d) * sizeof(float));
    memcpy(levels, g->levels, (size_t)n * sizeof(int32_t));
    int64_t slot = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *list = g->links0 + i * stride0(g);
        int32_t *row = links0 + i * g->m0;
        for (int j = 0; j < g->m0; j++) row[j] = j < list[0] ? list[1 + j] : -1;
        for (int l = 1; l <= g->levels[i]; l++, slot++) {
            const int32_t *ul = links_of(g, (int32_t)i, l);
            int32_t *urow = upper + slot * g->m;
            for (int j = 0; j < g->m; j++) urow[j] = j < ul[0] ? ul[1 + j] : -1;
        }
    }
}

int fedrec_graph_clone(const fedrec_graph *g, fedrec_graph **out) {
    if (g == NULL || out == NULL) return FEDREC_GRAPH_INVALID_ARGUMENT;
    *out = NULL;
    fedrec_graph *c = graph_new(g->d, g->m, g->ef_construction, g->seed);
    if (c == NULL) return FEDREC_GRAPH_OUT_OF_MEMORY;
    if (g->count > 0) {
        if (!reserve_nodes(c, g->count)) {
            fedrec_graph_free(c);
            return FEDREC_GRAPH_OUT_OF_MEMORY;
        }
        memcpy(c->vectors, g->vectors, (size_t)(g->count * g->d) * sizeof(float));
        memcpy(c->links0, g->links0, (size_t)(g->count * stride0(g)) * sizeof(int32_t));
        memcpy(c->levels, g->levels, (size_t)g->count * sizeof(int32_t));
        for (int64_t i = 0; i < g->count; i++) {
            c->upper[i] = NULL;
            c->count = i;  // so a failure frees exactly the blocks copied so far
            if (g->levels[i] > 0) {
                size_t size = (size_t)g->levels[i] * (size_t)(1 + g->m) * sizeof(int32_t);
                c->upper[i] = malloc(size);
                if (c->upper[i] == NULL) {
                    fedrec_graph_free(c);
                    return FEDREC_GRAPH_OUT_OF_MEMORY;
                }
                memcpy(c->upper[i], g->upper[i], size);
            }
        }
        c->count = g->count;
    }
    c->entry = g->entry;
    c->max_level = g->max_level;
    *out = c;
    return FEDREC_GRAPH_OK;
}

static int corrupt(char *error, size_t capacity, const char *format, ...) {
    if (error != NULL && capacity > 0) {
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(error, capacity, format, arguments);
        va_end(arguments);
    }
    return FEDREC_GRAPH_CORRUPT;
}

/// Checks one exported list row of `width` slots for node `node` on `level`; returns its length or -1.
static int check_list(const int32_t *row, int width, int64_t node, int level, int64_t count, const int32_t *levels) {
    int n = 0;
    while (n < width && row[n] >= 0) n++;
    for (int j = n; j < width; j++)
        if (row[j] != -1) return -1;
    for (int j = 0; j < n; j++) {
        int32_t id = row[j];
        if (id >= count || id == node || levels[id] < level) return -1;
    }
    return n;
}

int fedrec_graph_import(int dimension, int m, int ef_construction, uint64_t seed, int64_t count, const float *vectors,
                       const int32_t *levels, const int32_t *links0, const int32_t *upper, int64_t upper_list_count,
                       int32_t entry_point, fedrec_graph **out, char *error, size_t error_capacity) {
    if (out == NULL) return FEDREC_GRAPH_INVALID_ARGUMENT;
    *out = NULL;
    if (dimension < 1 || m < 2 || m > FEDREC_GRAPH_MAX_M || ef_construction < 1 ||
        ef_construction > FEDREC_GRAPH_MAX_BREADTH)
        return corrupt(error, error_capacity, "invalid parameters (dimension %d, M %d, efConstruction %d)", dimension,
                       m, ef_construction);
    if (count < 0 || count > INT32_MAX) return corrupt(error, error_capacity, "invalid item count %lld", (long long)count);
    if (count > 0 && (vectors == NULL || levels == NULL || links0 == NULL))
        return FEDREC_GRAPH_INVALID_ARGUMENT;
    if (count == 0 && entry_point != -1) return corrupt(error, error_capacity, "an empty graph with an entry point");
    int top = 0;
    int64_t lists = 0;
    for (int64_t i = 0; i < count; i++) {
        if (levels[i] < 0 || levels[i] > FEDREC_GRAPH_MAX_LEVEL)
            return corrupt(error, error_capacity, "node %lld has level %d", (long long)i, levels[i]);
        if (levels[i] > top) top = levels[i];
        lists += levels[i];
    }
    if (lists != upper_list_count)
        return corrupt(error, error_capacity, "%lld upper-level lists, the levels need %lld", (long long)upper_list_count,
                       (long long)lists);
    if (lists > 0 && upper == NULL) return FEDREC_GRAPH_INVALID_ARGUMENT;
    if (count > 0 && (entry_point < 0 || entry_point >= count || levels[entry_point] != top))
        return corrupt(error, error_capacity, "entry point %d is not a node of the top level %d", entry_point, top);
    int m0 = 2 * m;
    int64_t slot = 0;
    for (int64_t i = 0; i < count; i++) {
        if (check_list(links0 + i * m0, m0, i, 0, count, levels) < 0)
            return corrupt(error, error_capacity, "node %lld has an invalid level-0 link list", (long long)i);
        for (int l = 1; l <= levels[i]; l++, slot++)
            if (check_list(upper + slot * m, m, i, l, count, levels) < 0)
                return corrupt(error, error_capacity, "node %lld has an invalid level-%d link list", (long long)i, l);
    }
    fedrec_graph *g = graph_new(dimension, m, ef_construction, seed);
    if (g == NULL) return FEDREC_GRAPH_OUT_OF_MEMORY;
    if (count > 0) {
        if (!reserve_nodes(g, count)) {
            fedrec_graph_free(g);
            return FEDREC_GRAPH_OUT_OF_MEMORY;
        }
        memcpy(g->vectors, vectors, (size_t)(count * dimension) * sizeof(float));
        memcpy(g->levels, levels, (size_t)count * sizeof(int32_t));
        slot = 0;
        for (int64_t i = 0; i < count; i++) {
            g->count = i;  // so a failure frees exactly the blocks made so far
            int32_t *list = g->links0 + i * stride0(g);
            list[0] = check_list(links0 + i * m0, m0, i, 0, count, levels);
            memcpy(list + 1, links0 + i * m0, (size_t)list[0] * sizeof(int32_t));
            g->upper[i] = NULL;
            if (levels[i] > 0) {
                g->upper[i] = calloc((size_t)levels[i] * (size_t)(1 + m), sizeof(int32_t));
                if (g->upper[i] == NULL) {
                    fedrec_graph_free(g);
                    return FEDREC_GRAPH_OUT_OF_MEMORY;
                }
            }
            for (int l = 1; l <= levels[i]; l++, slot++) {
                int32_t *ul = g->upper[i] + (int64_t)(l - 1) * (1 + m);
                ul[0] = check_list(upper + slot * m, m, i, l, count, levels);
                memcpy(ul + 1, upper + slot * m, (size_t)ul[0] * sizeof(int32_t));
            }
        }
        g->count = count;
        g->entry = entry_point;
        g->max_level = top;
    }
    *out = g;
    return FEDREC_GRAPH_OK;
}

// MARK: - Fingerprints

uint64_t fedrec_graph_fingerprint_floats(uint64_t hash, const float *values, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, values + i, 4);
        hash ^= (uint64_t)bits;
        hash *= 0x00000100000001B3ull;
    }
    return hash;
}

uint64_t fedrec_graph_fingerprint_ints(uint64_t hash, const int32_t *values, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        hash ^= (uint64_t)(uint32_t)values[i];
        hash *= 0x00000100000001B3ull;
    }
    return hash;
}
