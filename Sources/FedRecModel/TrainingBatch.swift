public import FedRecTensor

/// One mini-batch of training examples: example `b` asks the model to rank `targets[b]` for the user whose
/// history is bag `b` and whose user-feature row is `userRows[b]`.
public struct TrainingBatch: Sendable, Equatable {
    public var histories: IndexBags
    public var userRows: [Int32]
    public var targets: [Int32]

    public init(histories: IndexBags, userRows: [Int32], targets: [Int32]) {
        precondition(histories.count == userRows.count && userRows.count == targets.count, "batch parts differ in length")
        self.histories = histories
        self.userRows = userRows
        self.targets = targets
    }

    public init() {
        self.histories = IndexBags()
        self.userRows = []
        self.targets = []
    }

    public var count: Int { targets.count }

    /// Empties the batch, keeping capacity.
    public mutating func removeAll() {
        histories.removeAll()
        userRows.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
    }

    /// Appends the example "predict `known[position]` from the user's other known items": the history is
    /// `known` without that position, cut to its last `maxHistory` entries (nil: all of them).
    public mutating func append(known: [Int32], position: Int, userRow: Int, maxHistory: Int?) {
        precondition(known.indices.contains(position), "position outside the known items")
        let others = known.count - 1
        let keep = min(others, maxHistory ?? others)
        // The kept items are the last `keep` of `known` with `position` removed.
        var start = known.count - keep
        if position >= start { start -= 1 }
        start = max(start, 0)
        histories.append(
            known[start...].indices.lazy.filter { $0 != position }.map { known[$0] })
        userRows.append(Int32(userRow))
        targets.append(known[position])
    }
}

/// What the user-side loss scores against, as rows of a given item-embedding matrix.
public struct SoftmaxCandidates: Sendable, Equatable {
    /// Per example, the row of its positive item.
    public var positives: [Int32]
    /// Shared sampled rows (with replacement); nil: full softmax over every row.
    public var negatives: [Int32]?
    /// Per row, `log` of its expected count among the samples (sampled softmax only).
    public var logCorrection: [Float]

    /// Full softmax over every row; `targets` are rows (catalogue items when the matrix is the whole catalogue).
    public static func full(targets: [Int32]) -> SoftmaxCandidates {
        SoftmaxCandidates(positives: targets, negatives: nil, logCorrection: [])
    }

    /// Sampled softmax with log-Q correction.
    public static func sampled(positives: [Int32], negatives: [Int32], logCorrection: [Float]) -> SoftmaxCandidates {
        SoftmaxCandidates(positives: positives, negatives: negatives, logCorrection: logCorrection)
    }

    public init(positives: [Int32], negatives: [Int32]?, logCorrection: [Float]) {
        self.positives = positives
        self.negatives = negatives
        self.logCorrection = logCorrection
    }
}
