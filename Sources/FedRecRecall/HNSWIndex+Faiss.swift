internal import CFedRecFaiss
public import FedRecTensor

/// faiss `IndexHNSWFlat` (METRIC_INNER_PRODUCT) through the C API of `CFedRecFaiss` (every faiss exception
/// becomes a `RecallError`): kept only as the comparison backend of `fedrec bench index`; the index fedrec serves
/// with is `HNSWIndex`. faiss 1.7.3 reads the breadth from the shared index: the C API lets searches at one
/// breadth run together and runs one at another breadth alone, so views with different breadths may be searched
/// concurrently.
public final class FaissHNSWIndex: ItemIndex, @unchecked Sendable {
    private let handle: OpaquePointer
    public let count: Int
    public let dimension: Int
    public let parameters: HNSWParameters
    /// Search breadth (efSearch; raised to k when smaller).
    public let efSearch: Int
    public var kind: String { "faiss-hnsw" }

    private init(handle: OpaquePointer, parameters: HNSWParameters, efSearch: Int) {
        self.handle = handle
        self.count = Int(fedrec_hnsw_count(handle))
        self.dimension = Int(fedrec_hnsw_dimension(handle))
        self.parameters = parameters
        self.efSearch = efSearch
        self.owner = nil
    }

    deinit { if owner == nil { fedrec_hnsw_free(handle) } }

    /// The same index with another search breadth (shares the graph).
    public func withSearchBreadth(_ efSearch: Int) -> FaissHNSWIndex {
        precondition(efSearch >= 1, "efSearch must be positive")
        return FaissHNSWIndex(sharing: self, efSearch: efSearch, recount: false)
    }

    /// The index that owns (and frees) the faiss handle, when this one shares it.
    private let owner: FaissHNSWIndex?

    /// Sets the OpenMP thread count faiss uses (1 for single-thread figures).
    public static func setThreadCount(_ threads: Int) {
        fedrec_faiss_set_threads(Int32(max(1, threads)))
    }

    /// Builds the graph over the rows of `items`.
    public static func build(items: Matrix, parameters: HNSWParameters = HNSWParameters(), efSearch: Int = 128) throws(RecallError) -> FaissHNSWIndex {
        precondition(parameters.m >= 2 && parameters.efConstruction >= 1 && efSearch >= 1, "invalid HNSW parameters")
        var handle: OpaquePointer?
        let status = try call { error, capacity in
            items.storage.withUnsafeBufferPointer { vectors in
                fedrec_hnsw_build(
                    vectors.baseAddress, Int64(items.rows), Int32(items.columns), Int32(parameters.m),
                    Int32(parameters.efConstruction), &handle, error, capacity)
            }
        }
        _ = status
        return FaissHNSWIndex(handle: handle!, parameters: parameters, efSearch: efSearch)
    }

    /// Appends rows (their item indices continue from `count`); returns the grown index.
    public func adding(_ rows: Matrix) throws(RecallError) -> FaissHNSWIndex {
        precondition(rows.columns == dimension, "rows must have \(dimension) columns")
        _ = try Self.call { error, capacity in
            rows.storage.withUnsafeBufferPointer { vectors in
                fedrec_hnsw_add(handle, vectors.baseAddress, Int64(rows.rows), error, capacity)
            }
        }
        return FaissHNSWIndex(sharing: self, efSearch: efSearch, recount: true)
    }

    private init(sharing other: FaissHNSWIndex, efSearch: Int, recount: Bool) {
        self.handle = other.handle
        self.count = Int(fedrec_hnsw_count(other.handle))
        self.dimension = other.dimension
        self.parameters = other.parameters
        self.efSearch = efSearch
        self.owner = other.owner ?? other
    }

    public func search(_ queries: Matrix, k: Int) throws(RecallError) -> SearchResults {
        precondition(k > 0, "top-K needs k > 0, got \(k)")
        precondition(queries.columns == dimension, "queries have \(queries.columns) columns, the index \(dimension)")
        var labels = [Int64](repeating: -1, count: queries.rows * k)
        var scores = [Float](repeating: -.infinity, count: queries.rows * k)
        _ = try Self.call { error, capacity in
            queries.storage.withUnsafeBufferPointer { q in
                labels.withUnsafeMutableBufferPointer { l in
                    scores.withUnsafeMutableBufferPointer { s in
                        fedrec_hnsw_search(
                            handle, q.baseAddress, Int64(queries.rows), Int32(k), Int32(efSearch), l.baseAddress,
                            s.baseAddress, error, capacity)
                    }
                }
            }
        }
        var items = [Int32](repeating: -1, count: labels.count)
        for i in labels.indices where labels[i] >= 0 { items[i] = Int32(labels[i]) }
        for i in labels.indices where labels[i] < 0 { scores[i] = -.infinity }
        return SearchResults(queryCount: queries.rows, k: k, items: items, scores: scores)
    }

    /// Calls a C function with an error buffer; throws its message on a non-zero code.
    @discardableResult
    private static func call(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws(RecallError) -> Int32 {
        var error = [CChar](repeating: 0, count: 512)
        let status = error.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        guard status == 0 else {
            let message = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw RecallError(code: .index, message: "HNSW index: \(message) (code \(status))")
        }
        return status
    }
}
