internal import Dispatch
public import FedRecTensor
internal import Synchronization

/// Build parameters of an HNSW index.
public struct HNSWParameters: Sendable, Equatable, Codable {
    /// Links per node on the upper levels (2M on level 0), 2...2048.
    public var m: Int = 32
    /// Search breadth while building.
    public var efConstruction: Int = 40
    /// Seeds the level draw (node i's level depends only on the seed and i): the same items, parameters and seed
    /// build the same graph.
    public var seed: UInt64 = 0

    /// Largest M (`FEDREC_GRAPH_MAX_M`).
    public static let maximumM = 2048
    /// Largest search breadth (`efSearch`, `efConstruction`) and result count `k` the graph takes
    /// (`FEDREC_GRAPH_MAX_BREADTH`): the C code's scratch sizes are `int`s.
    public static let maximumBreadth = 1 << 24

    public init(m: Int = 32, efConstruction: Int = 40, seed: UInt64 = 0) {
        self.m = m
        self.efConstruction = efConstruction
        self.seed = seed
    }
}

/// Approximate top-K by inner product: a hand-written HNSW graph (Malkov & Yashunin 2018) in the C target
/// `CFedRecHNSW`, compiled with -O3 in every configuration, dot products on AVX2+FMA when the CPU has them.
///
/// Why not faiss: Debian's libfaiss-dev 1.7.3 is the only packaged HNSW, and it is compiled without AVX2, and
/// 1.7.3 reads the search breadth from the index in parts of the search (a per-call breadth is not honoured, and
/// concurrent searches with different breadths race). Measured on this machine kind (100k unit vectors, d = 64,
/// M = 32, efConstruction 40, one thread, K = 100): faiss 1.7.3 built in 88 s and ran 371 queries/s at recall@100
/// 0.685 (breadth 128), while current faiss (faiss-cpu 1.15, not packaged) builds in 24 s and runs 1,352
/// queries/s at 0.69. This index builds in about 9 s and runs about 3,300 queries/s at 0.695 with the same
/// parameters (`fedrec bench index`), with no system dependency.
///
/// Graph: Algorithm 1 of the paper with faiss's linking rule (a new node links to every node its
/// efConstruction-wide search found when they fit in its list, 2M on level 0 and M above; longer lists, and full
/// lists receiving a back-link, are cut with the heuristic of Algorithm 4). Levels come from a seeded hash of the
/// node id, so a build is deterministic.
///
/// Semantics: `efSearch` is the beam width on level 0; the `k` results are the best `k` of every item the
/// search scored, best first, so a breadth below `k` is allowed (it scores fewer items and finds fewer of the
/// true top `k`). Scores are the inner products of the stored float32 vectors. An index is immutable:
/// `adding(_:)` returns a grown copy, so searches may run concurrently from any thread.
public final class HNSWIndex: ItemIndex, @unchecked Sendable {
    let graph: HNSWGraph
    public let count: Int
    public let dimension: Int
    public let parameters: HNSWParameters
    /// Search breadth (beam width on level 0).
    public let efSearch: Int
    public var kind: String { "hnsw" }

    init(graph: HNSWGraph, parameters: HNSWParameters, efSearch: Int) {
        self.graph = graph
        self.count = graph.count
        self.dimension = graph.dimension
        self.parameters = parameters
        self.efSearch = efSearch
    }

    /// The dot-product kernels in use on this CPU: "avx2+fma" or "portable".
    public static var kernel: String { HNSWGraph.kernelName }

    /// Threads a batch search spreads its queries over (1: the calling thread only). The build is always single
    /// threaded.
    private static let threads = Atomic<Int>(1)

    /// Sets the number of threads a batch search uses (at least 1).
    public static func setThreadCount(_ threads: Int) {
        Self.threads.store(max(1, threads), ordering: .relaxed)
    }

    /// Builds the graph over the rows of `items` (single thread).
    public static func build(
        items: Matrix, parameters: HNSWParameters = HNSWParameters(), efSearch: Int = 128
    ) throws(RecallError) -> HNSWIndex {
        // Checked here, not by a precondition: this target is built -Ounchecked, and the C code takes `int`s.
        guard (2...HNSWParameters.maximumM).contains(parameters.m),
            (1...HNSWParameters.maximumBreadth).contains(parameters.efConstruction),
            (1...HNSWParameters.maximumBreadth).contains(efSearch)
        else {
            throw RecallError(
                code: .invalidRequest,
                message: "HNSW parameters out of range: M \(parameters.m) (2...\(HNSWParameters.maximumM)), "
                    + "efConstruction \(parameters.efConstruction) and efSearch \(efSearch) "
                    + "(1...\(HNSWParameters.maximumBreadth))")
        }
        precondition(items.columns >= 1, "items need at least one column")
        precondition(items.rows < Int(Int32.max), "at most 2^31 - 1 items")
        let graph = try HNSWGraph.build(
            vectors: items.storage, count: items.rows, dimension: items.columns, m: parameters.m,
            efConstruction: parameters.efConstruction, seed: parameters.seed)
        return HNSWIndex(graph: graph, parameters: parameters, efSearch: efSearch)
    }

    /// The same index with another search breadth (shares the graph).
    public func withSearchBreadth(_ efSearch: Int) -> HNSWIndex {
        precondition(efSearch >= 1, "efSearch must be positive")
        return HNSWIndex(graph: graph, parameters: parameters, efSearch: efSearch)
    }

    /// A copy with `rows` appended (their item indices continue from `count`); this index is unchanged.
    public func adding(_ rows: Matrix) throws(RecallError) -> HNSWIndex {
        precondition(rows.columns == dimension, "rows must have \(dimension) columns")
        return HNSWIndex(graph: try graph.adding(rows.storage, count: rows.rows), parameters: parameters, efSearch: efSearch)
    }

    public func search(_ queries: Matrix, k: Int) throws(RecallError) -> SearchResults {
        precondition(k > 0, "top-K needs k > 0, got \(k)")
        precondition(queries.columns == dimension, "queries have \(queries.columns) columns, the index \(dimension)")
        let q = queries.rows
        var items = [Int32](repeating: -1, count: q * k)
        var scores = [Float](repeating: -.infinity, count: q * k)
        let threads = min(Self.threads.load(ordering: .relaxed), q)
        let d = dimension
        let breadth = efSearch
        let graph = graph
        let failure = Failure()
        queries.storage.withUnsafeBufferPointer { queryBuffer in
            items.withUnsafeMutableBufferPointer { itemBuffer in
                scores.withUnsafeMutableBufferPointer { scoreBuffer in
                    guard q > 0 else { return }
                    let buffers = SearchBuffers(
                        queries: queryBuffer.baseAddress!, labels: itemBuffer.baseAddress!, scores: scoreBuffer.baseAddress!)
                    let chunks = threads <= 1 ? 1 : threads * 4
                    let perChunk = (q + chunks - 1) / chunks
                    let run: @Sendable (Int) -> Void = { chunk in
                        let start = chunk * perChunk
                        let end = min(q, start + perChunk)
                        guard start < end else { return }
                        do throws(RecallError) {
                            try graph.search(
                                queries: buffers.queries + start * d, queryCount: end - start, k: k, breadth: breadth,
                                labels: buffers.labels + start * k, scores: buffers.scores + start * k)
                        } catch {
                            failure.withLock { if $0 == nil { $0 = error } }
                        }
                    }
                    if chunks == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: chunks, execute: run) }
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return SearchResults(queryCount: q, k: k, items: items, scores: scores)
    }
}

/// The buffers of one batch search; chunks of queries write disjoint rows of `labels` and `scores`, and the
/// buffers outlive the (synchronous) concurrent loop.
private struct SearchBuffers: @unchecked Sendable {
    let queries: UnsafePointer<Float>
    let labels: UnsafeMutablePointer<Int32>
    let scores: UnsafeMutablePointer<Float>
}

/// The first error of a batch search's chunks.
private final class Failure: Sendable {
    private let error = Mutex<RecallError?>(nil)
    func withLock<R>(_ body: (inout RecallError?) -> R) -> R { error.withLock { body(&$0) } }
}

/// A fingerprint of an item matrix (FNV-1a 64 over its shape and the bit patterns of its values, each as a
/// 64-bit word), stored in index files so a stale index is detected.
public enum MatrixFingerprint {
    /// The FNV-1a 64 offset basis.
    static let basis: UInt64 = 0xcbf2_9ce4_8422_2325

    public static func of(_ matrix: Matrix) -> String {
        var hash = basis
        for word in [UInt64(matrix.rows), UInt64(matrix.columns)] {
            hash ^= word
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(HNSWGraph.fingerprint(matrix.storage, from: hash), radix: 16)
    }
}
