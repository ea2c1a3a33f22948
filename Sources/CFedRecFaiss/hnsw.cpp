// The only file that touches faiss: a C API over IndexHNSWFlat that turns every C++ exception into an error code.
#include "fedrec_faiss.h"

#include <faiss/IndexHNSW.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>

struct fedrec_hnsw {
    std::unique_ptr<faiss::IndexHNSWFlat> index;
    /// Guards the index's search breadth (`hnsw.efSearch`), which faiss 1.7.3 reads from the index during a
    /// search, and the graph: searches at the breadth it holds (and serializing) share the lock; changing the
    /// breadth or adding vectors takes it alone. Not covered: faiss's global search statistics (`hnsw_stats`),
    /// which every search updates unguarded and nothing here reads. glibc's rwlock prefers readers, so a steady
    /// stream of searches at one breadth can hold off one at another (this index only backs `bench index`).
    std::shared_mutex breadth;
};

namespace {

void write_error(char *error, size_t capacity, const std::string &message) {
    if (error == nullptr || capacity == 0) return;
    size_t n = message.size() < capacity - 1 ? message.size() : capacity - 1;
    std::memcpy(error, message.data(), n);
    error[n] = '\0';
}

template <typename Body>
int guarded(char *error, size_t capacity, Body body) {
    try {
        body();
        return FEDREC_FAISS_OK;
    } catch (const std::bad_alloc &) {
        write_error(error, capacity, "out of memory");
        return FEDREC_FAISS_OUT_OF_MEMORY;
    } catch (const faiss::FaissException &e) {
        write_error(error, capacity, std::string("faiss: ") + e.what());
        return FEDREC_FAISS_ERROR;
    } catch (const std::exception &e) {
        write_error(error, capacity, e.what());
        return FEDREC_FAISS_ERROR;
    } catch (...) {
        write_error(error, capacity, "unknown C++ exception");
        return FEDREC_FAISS_ERROR;
    }
}

int invalid(char *error, size_t capacity, const char *message) {
    write_error(error, capacity, message);
    return FEDREC_FAISS_INVALID_ARGUMENT;
}

}  // namespace

extern "C" {

void fedrec_faiss_set_threads(int threads) { omp_set_num_threads(threads < 1 ? 1 : threads); }

int fedrec_hnsw_build(const float *vectors, int64_t count, int dimension, int m, int ef_construction,
                      fedrec_hnsw **out, char *error, size_t error_capacity) {
    if (out == nullptr) return invalid(error, error_capacity, "no output pointer");
    *out = nullptr;
    if (dimension <= 0 || count < 0 || m < 2 || ef_construction < 1 || (count > 0 && vectors == nullptr))
        return invalid(error, error_capacity, "invalid build parameters");
    return guarded(error, error_capacity, [&] {
        auto holder = std::make_unique<fedrec_hnsw>();
        holder->index = std::make_unique<faiss::IndexHNSWFlat>(dimension, m, faiss::METRIC_INNER_PRODUCT);
        holder->index->hnsw.efConstruction = ef_construction;
        if (count > 0) holder->index->add(count, vectors);
        *out = holder.release();
    });
}

int fedrec_hnsw_add(fedrec_hnsw *index, const float *vectors, int64_t count, char *error, size_t error_capacity) {
    if (index == nullptr || count < 0 || (count > 0 && vectors == nullptr))
        return invalid(error, error_capacity, "invalid add parameters");
    return guarded(error, error_capacity, [&] {
        std::unique_lock<std::shared_mutex> alone(index->breadth);  // no search runs while the graph grows
        if (count > 0) index->index->add(count, vectors);
    });
}

int fedrec_hnsw_search(const fedrec_hnsw *index, const float *queries, int64_t query_count, int k, int ef_search,
                       int64_t *labels, float *scores, char *error, size_t error_capacity) {
    if (index == nullptr || query_count < 0 || k <= 0 || ef_search < 1 || labels == nullptr || scores == nullptr ||
        (query_count > 0 && queries == nullptr))
        return invalid(error, error_capacity, "invalid search parameters");
    return guarded(error, error_capacity, [&] {
        faiss::SearchParametersHNSW parameters;
        parameters.efSearch = ef_search < k ? k : ef_search;
        static_assert(sizeof(faiss::Index::idx_t) == sizeof(int64_t), "faiss idx_t is 64-bit");
        auto *hnsw = const_cast<faiss::IndexHNSWFlat *>(index->index.get());
        auto search = [&] {
            hnsw->search(query_count, queries, k, scores, reinterpret_cast<faiss::Index::idx_t *>(labels), &parameters);
        };
        // faiss 1.7.3 reads the breadth from the index in parts of the search, so it must hold this search's
        // breadth throughout: concurrent searches at the same breadth run side by side, one at another breadth
        // changes it alone and searches before letting others in.
        auto &breadth = const_cast<fedrec_hnsw *>(index)->breadth;
        {
            std::shared_lock<std::shared_mutex> shared(breadth);
            if (hnsw->hnsw.efSearch == parameters.efSearch) {
                search();
                return;
            }
        }
        std::unique_lock<std::shared_mutex> alone(breadth);
        hnsw->hnsw.efSearch = parameters.efSearch;
        search();
    });
}

int64_t fedrec_hnsw_count(const fedrec_hnsw *index) { return index == nullptr ? 0 : index->index->ntotal; }

int fedrec_hnsw_dimension(const fedrec_hnsw *index) { return index == nullptr ? 0 : index->index->d; }

int fedrec_hnsw_m(const fedrec_hnsw *index) {
    return index == nullptr ? 0 : static_cast<int>(index->index->hnsw.nb_neighbors(1));
}

int fedrec_hnsw_serialize(const fedrec_hnsw *index, uint8_t **bytes, size_t *length, char *error,
                          size_t error_capacity) {
    if (index == nullptr || bytes == nullptr || length == nullptr)
        return invalid(error, error_capacity, "invalid serialize parameters");
    *bytes = nullptr;
    *length = 0;
    return guarded(error, error_capacity, [&] {
        std::shared_lock<std::shared_mutex> shared(const_cast<fedrec_hnsw *>(index)->breadth);
        faiss::VectorIOWriter writer;
        faiss::write_index(index->index.get(), &writer);
        auto *buffer = static_cast<uint8_t *>(std::malloc(writer.data.size() > 0 ? writer.data.size() : 1));
        if (buffer == nullptr) throw std::bad_alloc();
        std::memcpy(buffer, writer.data.data(), writer.data.size());
        *bytes = buffer;
        *length = writer.data.size();
    });
}

void fedrec_faiss_free_buffer(uint8_t *bytes) { std::free(bytes); }

int fedrec_hnsw_deserialize(const uint8_t *bytes, size_t length, fedrec_hnsw **out, char *error,
                            size_t error_capacity) {
    if (out == nullptr || (length > 0 && bytes == nullptr))
        return invalid(error, error_capacity, "invalid deserialize parameters");
    *out = nullptr;
    return guarded(error, error_capacity, [&] {
        faiss::VectorIOReader reader;
        reader.data.assign(bytes, bytes + length);
        std::unique_ptr<faiss::Index> loaded(faiss::read_index(&reader));
        auto *hnsw = dynamic_cast<faiss::IndexHNSWFlat *>(loaded.get());
        if (hnsw == nullptr) throw std::runtime_error("the index is not an IndexHNSWFlat");
        if (hnsw->metric_type != faiss::METRIC_INNER_PRODUCT)
            throw std::runtime_error("the index does not use inner product");
        auto holder = std::make_unique<fedrec_hnsw>();
        loaded.release();
        holder->index.reset(hnsw);
        *out = holder.release();
    });
}

void fedrec_hnsw_free(fedrec_hnsw *index) { delete index; }

}  // extern "C"
