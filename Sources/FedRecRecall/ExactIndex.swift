public import FedRecTensor

/// Exact top-K by inner product: BLAS products over blocks of the item matrix fused with a bounded heap per
/// query, so the full score matrix is never materialised.
///
/// Batches of several queries use one `sgemm` per (query chunk, item block). Each query keeps a heap of its `k`
/// best (root = worst kept); scores are scanned 16 at a time and a whole group is rejected with four SSE compares
/// against the root when none beats it, which is nearly always once the heap is warm. A batch of one query
/// (memory-bound) first scores a bfloat16 copy of the items and re-scores exactly, with the `sgemv` of the
/// other paths, only the items an error bound cannot rule out (`ExactIndex+Kernels.swift`). Items are scanned
/// in index order, so a score equal to the root's never displaces it: ties go to the lower item index (the `TopK` order). With a reused `Workspace` and `SearchResults` the search
/// allocates nothing. Precondition: items and queries are finite.
public struct ExactIndex: ItemIndex {
    public let count: Int
    public let dimension: Int
    public var kind: String { "exact" }
    /// Row-major `count x dimension`.
    let items: [Float]
    /// The bfloat16 copy of the items for the single-query first pass (half the size of `items`).
    let roundedItems: RoundedItems

    /// Item rows per block of a batched search (the score block of 256 queries stays in cache).
    static let batchBlock = 1024
    /// Item rows per block of a single-query search.
    static let singleBlock = 8192
    /// Queries per chunk of a batched search.
    static let queryChunk = 256

    public init(items: Matrix) {
        precondition(items.isFinite, "the item matrix must be finite")
        self.count = items.rows
        self.dimension = items.columns
        self.items = items.storage
        self.roundedItems = RoundedItems(items: items.storage, count: items.rows, dimension: items.columns)
    }

    /// Buffers of a search, reused between searches.
    public struct Workspace: Sendable {
        var scores: [Float] = []
        var heapScores: [Float] = []
        var heapItems: [Int32] = []
        var heapCounts: [Int] = []
        var broadcast: [Float] = []
        public init() {}
    }

    public func search(_ queries: Matrix, k: Int) -> SearchResults {
        var workspace = Workspace()
        var results = SearchResults(queryCount: queries.rows, k: k)
        search(queries, k: k, workspace: &workspace, into: &results)
        return results
    }

    /// Searches into `results` (which must be `queries.rows x k`), reusing `workspace`.
    public func search(_ queries: Matrix, k: Int, workspace: inout Workspace, into results: inout SearchResults) {
        precondition(k > 0, "top-K needs k > 0, got \(k)")
        precondition(queries.columns == dimension, "queries have \(queries.columns) columns, the index \(dimension)")
        precondition(results.queryCount == queries.rows && results.k == k, "results must be \(queries.rows) x \(k)")
        let q = queries.rows
        let chunk = min(q, Self.queryChunk)
        let block = q == 1 ? Self.singleBlock : Self.batchBlock
        let kept = min(k, count)
        if workspace.scores.count < max(chunk * block, kept + 8) {
            workspace.scores = [Float](repeating: 0, count: max(chunk * block, kept + 8))
        }
        if workspace.heapScores.count < chunk * kept {
            workspace.heapScores = [Float](repeating: 0, count: chunk * kept)
            workspace.heapItems = [Int32](repeating: 0, count: chunk * kept)
        }
        if workspace.heapCounts.count < chunk { workspace.heapCounts = [Int](repeating: 0, count: chunk) }
        let d = dimension, n = count
        if q == 1 && kept < n && d > 0 {
            searchSingle(queries, k: k, kept: kept, workspace: &workspace, into: &results)
            return
        }
        items.withUnsafeBufferPointer { itemBuffer in
            queries.storage.withUnsafeBufferPointer { queryBuffer in
                workspace.scores.withUnsafeMutableBufferPointer { scoreBuffer in
                    workspace.heapScores.withUnsafeMutableBufferPointer { heapScores in
                        workspace.heapItems.withUnsafeMutableBufferPointer { heapItems in
                            workspace.heapCounts.withUnsafeMutableBufferPointer { heapCounts in
                                results.items.withUnsafeMutableBufferPointer { outItems in
                                    results.scores.withUnsafeMutableBufferPointer { outScores in
                                        guard let scores = scoreBuffer.baseAddress, let hs = heapScores.baseAddress,
                                            let hi = heapItems.baseAddress, let hc = heapCounts.baseAddress
                                        else { return }
                                        var start = 0
                                        while start < q {
                                            let m = min(chunk, q - start)
                                            for r in 0..<m { hc[r] = 0 }
                                            let query = queryBuffer.baseAddress! + start * d
                                            var first = 0
                                            while first < n {
                                                let rows = min(block, n - first)
                                                let itemBlock = itemBuffer.baseAddress! + first * d
                                                if m == 1 {
                                                    BLAS.sgemv(
                                                        .none, m: rows, n: d, alpha: 1, a: itemBlock, lda: d, x: query,
                                                        beta: 0, y: scores)
                                                } else {
                                                    BLAS.sgemm(
                                                        .none, .transpose, m: m, n: rows, k: d, alpha: 1, a: query,
                                                        lda: d, b: itemBlock, ldb: d, beta: 0, c: scores, ldc: rows)
                                                }
                                                for r in 0..<m {
                                                    Self.scan(
                                                        scores + r * rows, count: rows, firstItem: first,
                                                        heapScores: hs + r * kept, heapItems: hi + r * kept,
                                                        heapCount: &hc[r], capacity: kept)
                                                }
                                                first += rows
                                            }
                                            for r in 0..<m {
                                                Self.drain(
                                                    heapScores: hs + r * kept, heapItems: hi + r * kept, count: hc[r],
                                                    items: outItems.baseAddress! + (start + r) * k,
                                                    scores: outScores.baseAddress! + (start + r) * k, k: k)
                                            }
                                            start += m
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// One query through the bfloat16 filter (`kept < count`).
    private func searchSingle(_ queries: Matrix, k: Int, kept: Int, workspace: inout Workspace, into results: inout SearchResults) {
        let broadcastCount = 2 * 4 * roundedItems.wordsPerItem
        if workspace.broadcast.count < broadcastCount { workspace.broadcast = [Float](repeating: 0, count: broadcastCount) }
        var heapCount = 0
        items.withUnsafeBufferPointer { itemBuffer in
            roundedItems.words.withUnsafeBufferPointer { rounded in
                queries.storage.withUnsafeBufferPointer { queryBuffer in
                    workspace.scores.withUnsafeMutableBufferPointer { scratch in
                        workspace.heapScores.withUnsafeMutableBufferPointer { heapScores in
                            workspace.heapItems.withUnsafeMutableBufferPointer { heapItems in
                                workspace.broadcast.withUnsafeMutableBufferPointer { broadcast in
                                    results.items.withUnsafeMutableBufferPointer { outItems in
                                        results.scores.withUnsafeMutableBufferPointer { outScores in
                                            searchSingleFiltered(
                                                query: queryBuffer.baseAddress!, items: itemBuffer.baseAddress!,
                                                rounded: rounded.baseAddress!, heapScores: heapScores.baseAddress!,
                                                heapItems: heapItems.baseAddress!, heapCount: &heapCount, kept: kept,
                                                scratch: scratch.baseAddress!, broadcast: broadcast.baseAddress!)
                                            Self.drain(
                                                heapScores: heapScores.baseAddress!, heapItems: heapItems.baseAddress!,
                                                count: heapCount, items: outItems.baseAddress!,
                                                scores: outScores.baseAddress!, k: k)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every item's score for one query (the reference a full sort ranks; tests).
    public func scores(query: [Float]) -> [Float] {
        precondition(query.count == dimension, "query must have \(dimension) entries")
        var out = [Float](repeating: 0, count: count)
        items.withUnsafeBufferPointer { a in
            query.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { y in
                    BLAS.sgemv(
                        .none, m: count, n: dimension, alpha: 1, a: a.baseAddress!, lda: dimension, x: x.baseAddress!,
                        beta: 0, y: y.baseAddress!)
                }
            }
        }
        return out
    }

    // MARK: The fused heap

    /// Whether slot `a` is worse than slot `b`: lower score, or equal score and higher item index.
    @inline(__always)
    static func worse(_ s: UnsafeMutablePointer<Float>, _ ix: UnsafeMutablePointer<Int32>, _ a: Int, _ b: Int) -> Bool {
        s[a] < s[b] || (s[a] == s[b] && ix[a] > ix[b])
    }

    @inline(__always)
    static func siftDown(_ s: UnsafeMutablePointer<Float>, _ ix: UnsafeMutablePointer<Int32>, count: Int, from start: Int) {
        var parent = start
        let score = s[parent], item = ix[parent]
        while true {
            let left = 2 * parent + 1
            if left >= count { break }
            let right = left + 1
            let child = right < count && worse(s, ix, right, left) ? right : left
            // Stop when the moving element is worse than (or equal to) the worse child.
            if score < s[child] || (score == s[child] && item > ix[child]) { break }
            s[parent] = s[child]
            ix[parent] = ix[child]
            parent = child
        }
        s[parent] = score
        ix[parent] = item
    }

    @inline(__always)
    static func siftUp(_ s: UnsafeMutablePointer<Float>, _ ix: UnsafeMutablePointer<Int32>, from start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard worse(s, ix, child, parent) else { return }
            (s[child], s[parent]) = (s[parent], s[child])
            (ix[child], ix[parent]) = (ix[parent], ix[child])
            child = parent
        }
    }

    /// Offers `count` scores of items `firstItem...` to one query's heap.
    @inline(__always)
    static func scan(
        _ scores: UnsafeMutablePointer<Float>, count: Int, firstItem: Int, heapScores hs: UnsafeMutablePointer<Float>,
        heapItems hi: UnsafeMutablePointer<Int32>, heapCount: inout Int, capacity: Int
    ) {
        var j = 0
        while heapCount < capacity && j < count {
            hs[heapCount] = scores[j]
            hi[heapCount] = Int32(firstItem + j)
            siftUp(hs, hi, from: heapCount)
            heapCount += 1
            j += 1
        }
        guard capacity > 0 else { return }
        var threshold = hs[0]
        // SIMD4 (one SSE register) compares: wider generic SIMD types build their splats and masks through the
        // stack in the baseline x86-64 code this package compiles to.
        var splat = SIMD4<Float>(repeating: threshold)
        let raw = UnsafeRawPointer(scores)
        while j + 16 <= count {
            let v0 = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD4<Float>.self)
            let v1 = raw.loadUnaligned(fromByteOffset: j * 4 + 16, as: SIMD4<Float>.self)
            let v2 = raw.loadUnaligned(fromByteOffset: j * 4 + 32, as: SIMD4<Float>.self)
            let v3 = raw.loadUnaligned(fromByteOffset: j * 4 + 48, as: SIMD4<Float>.self)
            if any((v0 .> splat) .| (v1 .> splat) .| (v2 .> splat) .| (v3 .> splat)) {
                for t in 0..<16 where scores[j + t] > threshold {
                    hs[0] = scores[j + t]
                    hi[0] = Int32(firstItem + j + t)
                    siftDown(hs, hi, count: capacity, from: 0)
                    threshold = hs[0]
                }
                splat = SIMD4<Float>(repeating: threshold)
            }
            j += 16
        }
        while j < count {
            if scores[j] > threshold {
                hs[0] = scores[j]
                hi[0] = Int32(firstItem + j)
                siftDown(hs, hi, count: capacity, from: 0)
                threshold = hs[0]
            }
            j += 1
        }
    }

    /// Heap-sorts one query's heap into `items`/`scores`, best first; pads to `k` with -1 / -infinity.
    static func drain(
        heapScores hs: UnsafeMutablePointer<Float>, heapItems hi: UnsafeMutablePointer<Int32>, count: Int,
        items: UnsafeMutablePointer<Int32>, scores: UnsafeMutablePointer<Float>, k: Int
    ) {
        var size = count
        while size > 0 {
            // The root is the worst of the remaining: it goes last.
            items[size - 1] = hi[0]
            scores[size - 1] = hs[0]
            size -= 1
            if size > 0 {
                hs[0] = hs[size]
                hi[0] = hi[size]
                siftDown(hs, hi, count: size, from: 0)
            }
        }
        for slot in count..<k {
            items[slot] = -1
            scores[slot] = -.infinity
        }
    }
}
