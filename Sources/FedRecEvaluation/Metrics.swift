#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A ranking-quality metric of `fedrec-eval-v1` (plus precision and F1).
///
/// Each is computed per user from the user's top-K list and held-out items, then averaged over the
/// users with at least one held-out item.
public enum Metric: String, Sendable, Hashable, Codable, CodingKeyRepresentable, CaseIterable {
    /// hits / |heldOut|.
    case recall
    /// Binary-relevance NDCG: DCG = Σ over hit ranks r (1-based) of 1/log2(r+1), divided by the DCG
    /// of min(K, |heldOut|) hits at ranks 1, 2, ...
    case ndcg
    /// 1 when there is at least one hit, else 0.
    case hitRate
    /// hits / K (K, not the list length, even when fewer than K items could be ranked).
    case precision
    /// 2PR / (P + R), and 0 when P + R = 0.
    case f1

    /// The short label used in tables: `R`, `NDCG`, `HR`, `P`, `F1`.
    public var abbreviation: String {
        switch self {
        case .recall: "R"
        case .ndcg: "NDCG"
        case .hitRate: "HR"
        case .precision: "P"
        case .f1: "F1"
        }
    }
}

/// One user's ranking outcome: where the held-out items landed in the user's top list.
///
/// Invariants: `hitRanks` is strictly increasing, each rank is 1-based and at most `listLength`;
/// `hitRanks.count <= heldOutCount`; `heldOutCount > 0`. Every metric at any cutoff
/// `K <= listLength` follows from these three numbers, so per-user outcomes are a compact record
/// for later federated or differential-privacy analyses (e.g. metrics over a subset of users).
public struct UserOutcome: Sendable, Hashable, Codable {
    /// The user's `FoldUser.userIndex`.
    public let userIndex: Int
    /// |heldOut|, the number of relevant items.
    public let heldOutCount: Int
    /// 1-based ranks, within the top list, of the held-out items that were retrieved.
    public let hitRanks: [Int]
    /// The cutoff the top list was taken at (the largest evaluated K).
    public let listLength: Int

    public init(userIndex: Int, heldOutCount: Int, hitRanks: [Int], listLength: Int) {
        precondition(heldOutCount > 0, "a user without held-out items has no outcome")
        precondition(hitRanks.count <= heldOutCount, "more hits than held-out items")
        precondition(zip(hitRanks, hitRanks.dropFirst()).allSatisfy { $0 < $1 }, "hit ranks must increase")
        precondition(hitRanks.allSatisfy { $0 >= 1 && $0 <= listLength }, "hit ranks must lie in 1...\(listLength)")
        self.userIndex = userIndex
        self.heldOutCount = heldOutCount
        self.hitRanks = hitRanks
        self.listLength = listLength
    }

    /// The number of held-out items among the first `k` of the list.
    public func hits(at k: Int) -> Int {
        precondition(k > 0 && k <= listLength, "cutoff \(k) outside 1...\(listLength)")
        var count = 0
        for rank in hitRanks where rank <= k { count += 1 }
        return count
    }

    /// The value of `metric` at cutoff `k` for this user.
    public func value(of metric: Metric, at k: Int) -> Double {
        let hits = Double(hits(at: k))
        switch metric {
        case .recall:
            return hits / Double(heldOutCount)
        case .hitRate:
            return hits > 0 ? 1 : 0
        case .precision:
            return hits / Double(k)
        case .f1:
            let p = hits / Double(k)
            let r = hits / Double(heldOutCount)
            return p + r == 0 ? 0 : 2 * p * r / (p + r)
        case .ndcg:
            var dcg = 0.0
            for rank in hitRanks where rank <= k { dcg += Self.discount(rank) }
            var idcg = 0.0
            for rank in 1...min(k, heldOutCount) { idcg += Self.discount(rank) }
            return dcg / idcg
        }
    }

    /// 1 / log2(rank + 1).
    private static func discount(_ rank: Int) -> Double {
        1 / log2(Double(rank + 1))
    }
}
