/// A fixed-size set of indices `0..<count`, stored as a bit mask.
///
/// Used to skip items during top-K selection (a user's known items) and to test membership in
/// constant time. Invariants: `words.count == (count + 63) / 64`; no bit at or beyond `count` is set.
public struct IndexMask: Sendable, Equatable {
    /// The number of indices the mask covers; members are in `0..<count`.
    public let count: Int
    @usableFromInline var words: [UInt64]

    /// An empty mask over `0..<count`.
    public init(count: Int) {
        precondition(count >= 0, "mask size must be non-negative")
        self.count = count
        self.words = [UInt64](repeating: 0, count: (count + 63) / 64)
    }

    /// A mask over `0..<count` holding `indices` (each must lie in `0..<count`).
    public init(count: Int, containing indices: some Sequence<some BinaryInteger>) {
        self.init(count: count)
        insert(contentsOf: indices)
    }

    /// Whether `index` is a member. Indices outside `0..<count` are never members.
    @inlinable
    public func contains(_ index: Int) -> Bool {
        guard index >= 0, index < count else { return false }
        return words[index >> 6] & (1 << UInt64(index & 63)) != 0
    }

    /// Adds `index`, which must lie in `0..<count`.
    @inlinable
    public mutating func insert(_ index: Int) {
        precondition(index >= 0 && index < count, "index \(index) outside mask of size \(count)")
        words[index >> 6] |= 1 << UInt64(index & 63)
    }

    /// Removes `index` if present; `index` must lie in `0..<count`.
    @inlinable
    public mutating func remove(_ index: Int) {
        precondition(index >= 0 && index < count, "index \(index) outside mask of size \(count)")
        words[index >> 6] &= ~(1 << UInt64(index & 63))
    }

    /// Adds every index of `indices`.
    public mutating func insert(contentsOf indices: some Sequence<some BinaryInteger>) {
        for index in indices { insert(Int(index)) }
    }

    /// Removes every index of `indices`: O(|indices|), so a mask can be reused across users without
    /// clearing all of it.
    public mutating func remove(contentsOf indices: some Sequence<some BinaryInteger>) {
        for index in indices { remove(Int(index)) }
    }

    /// Removes every member, keeping the storage.
    public mutating func removeAll() {
        words.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// The number of members.
    public var memberCount: Int {
        words.reduce(0) { $0 + $1.nonzeroBitCount }
    }
}

/// Exact top-K selection over score buffers.
///
/// Ranking order (total, deterministic): index `a` ranks before index `b` when
/// `score[a] > score[b]`, or when the scores are equal and `a < b` (ties go to the lower index, the
/// `fedrec-eval-v1` tie rule). `-0.0` and `+0.0` are equal. A NaN score ranks below every number,
/// `-infinity` included; NaNs rank among themselves by index. Excluded indices never appear.
///
/// Selection keeps a bounded min-heap of the `k` best candidates seen so far (its root is the worst
/// kept one), so it costs O(n log k) time and O(k) extra space, never a full sort of the `n` scores.
/// The result is the first `min(k, n - excluded)` indices of the ranking, in ranking order, i.e.
/// exactly the prefix of a full sort under the same order.
public enum TopK {
    /// Whether `(scoreA, indexA)` ranks strictly before `(scoreB, indexB)` in the ranking order.
    @inlinable
    public static func ranksBefore(_ scoreA: Float, _ indexA: Int, _ scoreB: Float, _ indexB: Int) -> Bool {
        if scoreA.isNaN {
            return scoreB.isNaN && indexA < indexB
        }
        if scoreB.isNaN { return true }
        if scoreA != scoreB { return scoreA > scoreB }
        return indexA < indexB
    }

    /// The indices of the `k` best scores in ranking order, skipping members of `excluded`.
    ///
    /// - Parameters:
    ///   - scores: one score per index; `scores[i]` belongs to index `i`.
    ///   - k: the number of indices wanted; must be positive. Fewer come back when fewer than `k`
    ///     indices are not excluded.
    ///   - excluded: indices never to return; when given, its `count` must equal `scores.count`.
    public static func select(_ scores: UnsafeBufferPointer<Float>, k: Int, excluding excluded: IndexMask? = nil)
        -> [Int]
    {
        precondition(k > 0, "top-K needs k > 0, got \(k)")
        if let excluded {
            precondition(
                excluded.count == scores.count, "mask covers \(excluded.count) indices, scores \(scores.count)")
        }
        var heap = BoundedHeap(capacity: min(k, scores.count))
        if let excluded {
            for index in scores.indices where !excluded.contains(index) {
                heap.offer(score: scores[index], index: index)
            }
        } else {
            for index in scores.indices {
                heap.offer(score: scores[index], index: index)
            }
        }
        return heap.sortedIndices()
    }

    /// The indices of the `k` best scores in ranking order, skipping members of `excluded`.
    public static func select(_ scores: [Float], k: Int, excluding excluded: IndexMask? = nil) -> [Int] {
        scores.withUnsafeBufferPointer { select($0, k: k, excluding: excluded) }
    }

    /// Row-wise top-K over a score matrix: row `r` holds one query's scores over `scores.columns`
    /// indices, and `result[r]` its `k` best column indices in ranking order.
    ///
    /// - Parameter excluded: `nil`, or one list of column indices per row (each in
    ///   `0..<scores.columns`) that row must skip. A single mask is reused across rows, so exclusion
    ///   costs O(|list|) per row beyond the scan.
    public static func select(rowsOf scores: Matrix, k: Int, excluding excluded: [[Int32]]? = nil) -> [[Int]] {
        precondition(k > 0, "top-K needs k > 0, got \(k)")
        if let excluded {
            precondition(excluded.count == scores.rows, "\(excluded.count) exclusion lists for \(scores.rows) rows")
        }
        let columns = scores.columns
        var mask = IndexMask(count: columns)
        var result: [[Int]] = []
        result.reserveCapacity(scores.rows)
        scores.storage.withUnsafeBufferPointer { all in
            for row in 0..<scores.rows {
                let rowScores = UnsafeBufferPointer(rebasing: all[(row * columns)..<((row + 1) * columns)])
                if let excluded {
                    mask.insert(contentsOf: excluded[row])
                    result.append(select(rowScores, k: k, excluding: mask))
                    mask.remove(contentsOf: excluded[row])
                } else {
                    result.append(select(rowScores, k: k))
                }
            }
        }
        return result
    }
}

/// A bounded heap of top-K candidates whose root is the worst kept candidate.
///
/// Invariants: `scores.count == indices.count <= capacity`; every child ranks before (is better
/// than) its parent, so slot 0 holds the candidate a better newcomer replaces.
struct BoundedHeap {
    let capacity: Int
    var scores: [Float] = []
    var indices: [Int] = []

    init(capacity: Int) {
        self.capacity = capacity
        scores.reserveCapacity(capacity)
        indices.reserveCapacity(capacity)
    }

    /// Whether the element at heap slot `a` is worse (ranks after) the one at slot `b`.
    @inline(__always)
    private func worse(_ a: Int, _ b: Int) -> Bool {
        TopK.ranksBefore(scores[b], indices[b], scores[a], indices[a])
    }

    /// Offers a candidate; kept if the heap has room or it ranks before the current worst.
    @inline(__always)
    mutating func offer(score: Float, index: Int) {
        if scores.count < capacity {
            scores.append(score)
            indices.append(index)
            siftUp(scores.count - 1)
        } else if capacity > 0, TopK.ranksBefore(score, index, scores[0], indices[0]) {
            scores[0] = score
            indices[0] = index
            siftDown(0)
        }
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard worse(child, parent) else { return }
            scores.swapAt(child, parent)
            indices.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let count = scores.count
        while true {
            let left = 2 * parent + 1
            guard left < count else { return }
            let right = left + 1
            let worst = right < count && worse(right, left) ? right : left
            guard worse(worst, parent) else { return }
            scores.swapAt(worst, parent)
            indices.swapAt(worst, parent)
            parent = worst
        }
    }

    /// The kept indices, best first.
    func sortedIndices() -> [Int] {
        let order = (0..<scores.count).sorted { TopK.ranksBefore(scores[$0], indices[$0], scores[$1], indices[$1]) }
        return order.map { indices[$0] }
    }
}
