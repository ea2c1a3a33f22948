internal import CFedRecHNSW

/// Owner of one `CFedRecHNSW` graph (the only file that calls it): frees it on deinit, turns every non-zero
/// return code into a `RecallError`, and keeps C types out of every other signature.
///
/// Invariant: after `init`/`adding`/`load` returns, the graph is never mutated again, so concurrent `search`
/// calls are safe (the C side takes per-search scratch from a mutex-protected pool).
final class HNSWGraph: @unchecked Sendable {
    private let handle: OpaquePointer

    private init(handle: OpaquePointer) { self.handle = handle }

    deinit { fedrec_graph_free(handle) }

    /// The dot-product kernels the C code dispatched to on this CPU ("avx2+fma" or "portable").
    static var kernelName: String { String(cString: fedrec_graph_kernel_name()) }

    /// Builds the graph over the rows of `vectors` (`count x dimension`, row-major).
    static func build(
        vectors: [Float], count: Int, dimension: Int, m: Int, efConstruction: Int, seed: UInt64
    ) throws(RecallError) -> HNSWGraph {
        var raw: OpaquePointer?
        try check(fedrec_graph_create(Int32(dimension), Int32(m), Int32(efConstruction), seed, &raw), "create the graph")
        guard let raw else { throw RecallError(code: .index, message: "HNSW index: create returned no graph") }
        let graph = HNSWGraph(handle: raw)
        try graph.add(vectors, count: count)
        return graph
    }

    /// Inserts rows in place; only for a graph no other index shares yet.
    private func add(_ vectors: [Float], count: Int) throws(RecallError) {
        precondition(vectors.count == count * dimension, "vectors must be count x dimension")
        let status = vectors.withUnsafeBufferPointer { fedrec_graph_add(handle, $0.baseAddress, Int64(count)) }
        try Self.check(status, "insert \(count) vectors")
    }

    /// A deep copy with `vectors` (`count x dimension`) inserted after the existing nodes.
    func adding(_ vectors: [Float], count: Int) throws(RecallError) -> HNSWGraph {
        var raw: OpaquePointer?
        try Self.check(fedrec_graph_clone(handle, &raw), "copy the graph")
        guard let raw else { throw RecallError(code: .index, message: "HNSW index: clone returned no graph") }
        let copy = HNSWGraph(handle: raw)
        try copy.add(vectors, count: count)
        return copy
    }

    var count: Int { Int(fedrec_graph_count(handle)) }
    var dimension: Int { Int(fedrec_graph_dimension(handle)) }
    var m: Int { Int(fedrec_graph_m(handle)) }
    var efConstruction: Int { Int(fedrec_graph_ef_construction(handle)) }
    var seed: UInt64 { fedrec_graph_seed(handle) }

    /// Searches `queryCount` rows starting at `queries` into `labels`/`scores` (each `queryCount x k`).
    func search(
        queries: UnsafePointer<Float>, queryCount: Int, k: Int, breadth: Int, labels: UnsafeMutablePointer<Int32>,
        scores: UnsafeMutablePointer<Float>
    ) throws(RecallError) {
        // `Int32(_:)` does not trap in this -Ounchecked target: a value past the C code's bound would wrap.
        guard (1...HNSWParameters.maximumBreadth).contains(k), (1...HNSWParameters.maximumBreadth).contains(breadth)
        else {
            throw RecallError(
                code: .invalidRequest,
                message: "HNSW search: k \(k) and breadth \(breadth) must lie in 1...\(HNSWParameters.maximumBreadth)")
        }
        let status = fedrec_graph_search(handle, queries, Int64(queryCount), Int32(k), Int32(breadth), labels, scores)
        try Self.check(status, "search")
    }

    // MARK: Export and import (the file format lives in HNSWIndex+File.swift)

    /// The graph as plain arrays; see `HNSWIndex+File.swift` for their meaning.
    struct Arrays {
        var vectors: [Float]
        var levels: [Int32]
        /// `count x 2M`, -1 padded.
        var links0: [Int32]
        /// `upperListCount x M`, -1 padded.
        var upper: [Int32]
        var upperListCount: Int
        var entryPoint: Int32
    }

    func export() -> Arrays {
        let n = count, d = dimension, m = m
        let lists = Int(fedrec_graph_upper_list_count(handle))
        var vectors = [Float](repeating: 0, count: n * d)
        var levels = [Int32](repeating: 0, count: n)
        var links0 = [Int32](repeating: -1, count: n * 2 * m)
        var upper = [Int32](repeating: -1, count: lists * m)
        vectors.withUnsafeMutableBufferPointer { v in
            levels.withUnsafeMutableBufferPointer { l in
                links0.withUnsafeMutableBufferPointer { l0 in
                    upper.withUnsafeMutableBufferPointer { u in
                        fedrec_graph_export(handle, v.baseAddress, l.baseAddress, l0.baseAddress, u.baseAddress)
                    }
                }
            }
        }
        return Arrays(
            vectors: vectors, levels: levels, links0: links0, upper: upper, upperListCount: lists,
            entryPoint: fedrec_graph_entry_point(handle))
    }

    /// Rebuilds a graph from exported arrays; throws `.corruptIndex` with the validator's reason when they do not
    /// describe a well-formed graph (ids out of range, links to nodes without that level, a bad entry point...).
    static func load(
        _ arrays: Arrays, dimension: Int, m: Int, efConstruction: Int, seed: UInt64, file: String
    ) throws(RecallError) -> HNSWGraph {
        var raw: OpaquePointer?
        var error = [CChar](repeating: 0, count: 256)
        let count = arrays.levels.count
        let status = arrays.vectors.withUnsafeBufferPointer { v in
            arrays.levels.withUnsafeBufferPointer { l in
                arrays.links0.withUnsafeBufferPointer { l0 in
                    arrays.upper.withUnsafeBufferPointer { u in
                        error.withUnsafeMutableBufferPointer { e in
                            fedrec_graph_import(
                                Int32(dimension), Int32(m), Int32(efConstruction), seed, Int64(count), v.baseAddress,
                                l.baseAddress, l0.baseAddress, u.baseAddress, Int64(arrays.upperListCount),
                                arrays.entryPoint, &raw, e.baseAddress, e.count)
                        }
                    }
                }
            }
        }
        if Int(status) == FEDREC_GRAPH_CORRUPT {
            let reason = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw RecallError(code: .corruptIndex, message: "\(file): not a valid fedrec HNSW index (\(reason)); delete it or rebuild it")
        }
        try check(status, "load \(file)")
        guard let raw else { throw RecallError(code: .index, message: "HNSW index: import returned no graph") }
        return HNSWGraph(handle: raw)
    }

    // MARK: Checksums

    /// FNV-1a 64 over 64-bit words, continuing from `hash` (see `MatrixFingerprint`).
    static func fingerprint(_ values: [Float], from hash: UInt64) -> UInt64 {
        values.withUnsafeBufferPointer { fedrec_graph_fingerprint_floats(hash, $0.baseAddress, Int64($0.count)) }
    }

    static func fingerprint(_ values: [Int32], from hash: UInt64) -> UInt64 {
        values.withUnsafeBufferPointer { fedrec_graph_fingerprint_ints(hash, $0.baseAddress, Int64($0.count)) }
    }

    /// Throws unless `status` is `FEDREC_GRAPH_OK`.
    private static func check(_ status: Int32, _ operation: String) throws(RecallError) {
        guard Int(status) != FEDREC_GRAPH_OK else { return }
        let reason =
            switch Int(status) {
            case FEDREC_GRAPH_INVALID_ARGUMENT: "invalid argument"
            case FEDREC_GRAPH_OUT_OF_MEMORY: "out of memory"
            case FEDREC_GRAPH_CORRUPT: "corrupt graph"
            default: "unknown error"
            }
        throw RecallError(code: .index, message: "HNSW index: cannot \(operation): \(reason) (code \(status))")
    }
}
