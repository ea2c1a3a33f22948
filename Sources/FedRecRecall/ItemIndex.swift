public import FedRecTensor

/// A top-K inner-product index over a fixed item matrix (`count x dimension`, unit rows for cosine).
public protocol ItemIndex: Sendable {
    /// Number of items (rows).
    var count: Int { get }
    var dimension: Int { get }
    /// A short name for messages ("exact", "hnsw").
    var kind: String { get }
    /// The `k` best items of each query row (`queries` is `q x dimension`) by inner product.
    func search(_ queries: Matrix, k: Int) throws(RecallError) -> SearchResults
}

/// Results of a batch search: row `r` holds query `r`'s items best first, in `items[r*k ..< r*k + k]`;
/// slots past the found items hold -1 (item) and -infinity (score).
public struct SearchResults: Sendable, Equatable {
    public let queryCount: Int
    public let k: Int
    public internal(set) var items: [Int32]
    public internal(set) var scores: [Float]

    public init(queryCount: Int, k: Int) {
        self.queryCount = queryCount
        self.k = k
        items = [Int32](repeating: -1, count: queryCount * k)
        scores = [Float](repeating: -.infinity, count: queryCount * k)
    }

    public init(queryCount: Int, k: Int, items: [Int32], scores: [Float]) {
        precondition(items.count == queryCount * k && scores.count == queryCount * k, "results must be queryCount x k")
        self.queryCount = queryCount
        self.k = k
        self.items = items
        self.scores = scores
    }

    /// Query `query`'s found items, best first.
    public func row(_ query: Int) -> [(item: Int32, score: Float)] {
        var out: [(item: Int32, score: Float)] = []
        for slot in (query * k)..<(query * k + k) where items[slot] >= 0 { out.append((items[slot], scores[slot])) }
        return out
    }
}
