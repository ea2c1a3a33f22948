/// Variable-length bags of row indices in CSR form (e.g. each user's history items).
///
/// Invariants: `offsets.count == count + 1`, `offsets[0] == 0`, offsets non-decreasing,
/// `offsets[count] == indices.count`; bag `b` is `indices[offsets[b] ..< offsets[b + 1]]`.
public struct IndexBags: Sendable, Equatable {
    public private(set) var offsets: [Int32]
    public private(set) var indices: [Int32]

    /// No bags.
    public init() {
        offsets = [0]
        indices = []
    }

    public init(offsets: [Int32], indices: [Int32]) {
        precondition(offsets.first == 0 && Int(offsets.last ?? -1) == indices.count, "bag offsets must span indices")
        self.offsets = offsets
        self.indices = indices
    }

    /// Builds bags from one index list per bag.
    public init(_ bags: [[Int32]]) {
        self.init()
        for bag in bags { append(bag) }
    }

    public var count: Int { offsets.count - 1 }

    /// The indices of bag `b`.
    public func bag(_ b: Int) -> ArraySlice<Int32> {
        indices[Int(offsets[b])..<Int(offsets[b + 1])]
    }

    /// Removes every bag, keeping the capacity.
    public mutating func removeAll() {
        offsets.removeAll(keepingCapacity: true)
        offsets.append(0)
        indices.removeAll(keepingCapacity: true)
    }

    /// Appends one bag.
    public mutating func append<S: Sequence>(_ bag: S) where S.Element == Int32 {
        indices.append(contentsOf: bag)
        offsets.append(Int32(indices.count))
    }

    /// Appends one bag (contiguous copy; the generic form goes element by element when called across modules).
    public mutating func append(_ bag: ArraySlice<Int32>) {
        indices.append(contentsOf: bag)
        offsets.append(Int32(indices.count))
    }

    /// Appends one bag made of `first` followed by `second`.
    public mutating func append(_ first: ArraySlice<Int32>, followedBy second: ArraySlice<Int32>) {
        indices.append(contentsOf: first)
        indices.append(contentsOf: second)
        offsets.append(Int32(indices.count))
    }
}
