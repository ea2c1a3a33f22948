/// An append-only record that keeps only its most recent `capacity` entries in full, and counts every entry
/// appended, so a flood of refused messages cannot grow its owner's memory.
///
/// As a collection it is the kept entries, oldest first. Invariants: `count == min(total, capacity)`, and the
/// kept entries are the last `count` appended, in order.
public struct BoundedLog<Element: Sendable>: Sendable, RandomAccessCollection {
    /// Most entries kept.
    public let capacity: Int
    /// Up to `2 * capacity` entries, of which the last `capacity` are kept: trimming in batches keeps `append`
    /// amortised O(1).
    private var storage: [Element] = []
    /// Every entry appended, including those no longer kept.
    public private(set) var total = 0

    public init(capacity: Int = 1_000) {
        precondition(capacity > 0, "a bounded log keeps at least one entry")
        self.capacity = capacity
    }

    public var startIndex: Int { Swift.max(0, storage.count - capacity) }
    public var endIndex: Int { storage.count }
    public subscript(position: Int) -> Element {
        precondition(indices.contains(position), "bounded log index \(position) out of \(indices)")
        return storage[position]
    }

    /// The kept entries, oldest first.
    public var recent: [Element] { Array(self) }

    public mutating func append(_ entry: Element) {
        total += 1
        storage.append(entry)
        if storage.count >= 2 * capacity { storage.removeFirst(storage.count - capacity) }
    }

    /// This log with `transform` applied to each kept entry; its capacity and total stay.
    public func mapped<T: Sendable>(_ transform: (Element) throws -> T) rethrows -> BoundedLog<T> {
        var result = BoundedLog<T>(capacity: capacity)
        result.storage = try map(transform)
        result.total = total
        return result
    }

    /// Appends `other`'s kept entries after this log's and counts all of `other`'s entries, kept or not.
    public mutating func append(contentsOf other: BoundedLog<Element>) {
        let dropped = other.total - other.count
        for entry in other { append(entry) }
        total += dropped
    }
}

extension BoundedLog: Equatable where Element: Equatable {
    /// Equal when the capacities, the totals and the kept entries are.
    public static func == (lhs: BoundedLog, rhs: BoundedLog) -> Bool {
        lhs.capacity == rhs.capacity && lhs.total == rhs.total && lhs.elementsEqual(rhs)
    }
}
