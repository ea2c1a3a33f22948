public import FedRecTensor

/// The user-tower history input of a batch, one bag per example, in one of two forms.
public enum HistoryInput: Sendable, Equatable {
    /// One materialised bag per example (`O(sum of bag sizes)` per pass).
    case bags(IndexBags)
    /// Shared groups with one item left out per example (`O(sum of group sizes + examples)` per pass): the
    /// leave-one-out examples of one user share the user's known items.
    case leaveOneOut(LeaveOneOutBags)

    public enum Form: Sendable, Equatable {
        case bags, leaveOneOut
    }

    public var form: Form {
        switch self {
        case .bags: .bags
        case .leaveOneOut: .leaveOneOut
        }
    }

    /// Number of examples.
    public var count: Int {
        switch self {
        case .bags(let bags): bags.count
        case .leaveOneOut(let bags): bags.count
        }
    }

    /// The bags one per example (materialised for the grouped form).
    public var perExampleBags: IndexBags {
        switch self {
        case .bags(let bags): bags
        case .leaveOneOut(let bags): bags.perExampleBags
        }
    }
}

/// One mini-batch of training examples: example `b` asks the model to rank `targets[b]` for the user whose
/// history is bag `b` of `history` and whose user-feature row is `userRows[b]`.
public struct TrainingBatch: Sendable, Equatable {
    public var history: HistoryInput
    public var userRows: [Int32]
    public var targets: [Int32]

    public init(histories: IndexBags, userRows: [Int32], targets: [Int32]) {
        self.init(history: .bags(histories), userRows: userRows, targets: targets)
    }

    public init(history: HistoryInput, userRows: [Int32], targets: [Int32]) {
        precondition(history.count == userRows.count && userRows.count == targets.count, "batch parts differ in length")
        self.history = history
        self.userRows = userRows
        self.targets = targets
    }

    /// An empty batch whose examples will be stored in `form`.
    public init(form: HistoryInput.Form = .bags) {
        self.history = form == .bags ? .bags(IndexBags()) : .leaveOneOut(LeaveOneOutBags())
        self.userRows = []
        self.targets = []
    }

    public var count: Int { targets.count }

    /// The history bags one per example (materialised when the batch is grouped; setting stores per-example bags).
    public var histories: IndexBags {
        get { history.perExampleBags }
        set {
            precondition(newValue.count == count, "one history bag per example")
            history = .bags(newValue)
        }
    }

    /// Empties the batch, keeping capacity; `form` (nil: the current one) is the form of the next examples.
    public mutating func removeAll(form: HistoryInput.Form? = nil) {
        userRows.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
        switch (history, form ?? history.form) {
        case (.bags(var bags), .bags):
            history = .bags(IndexBags())  // keep `bags` uniquely referenced
            bags.removeAll()
            history = .bags(bags)
        case (.leaveOneOut(var bags), .leaveOneOut):
            history = .bags(IndexBags())
            bags.removeAll()
            history = .leaveOneOut(bags)
        case (_, .bags): history = .bags(IndexBags())
        case (_, .leaveOneOut): history = .leaveOneOut(LeaveOneOutBags())
        }
    }

    /// Appends the example "predict `known[position]` from the user's other known items": the history is
    /// `known` without that position, cut to its last `maxHistory` entries (nil: all of them).
    /// In the grouped form the example gets a group of its own (its history), nothing left out.
    public mutating func append(known: [Int32], position: Int, userRow: Int, maxHistory: Int?) {
        precondition(known.indices.contains(position), "position outside the known items")
        let others = known.count - 1
        let keep = min(others, maxHistory ?? others)
        // The kept items are the last `keep` of `known` with `position` removed.
        var start = known.count - keep
        if position >= start { start -= 1 }
        start = max(start, 0)
        let before = known[start..<max(start, position)]
        let after = known[max(start, position + 1)...]
        switch history {
        case .bags(var bags):
            history = .bags(IndexBags())  // keep `bags` uniquely referenced while appending
            bags.append(before, followedBy: after)
            history = .bags(bags)
        case .leaveOneOut(var bags):
            history = .bags(IndexBags())
            let group = bags.appendGroup(before, followedBy: after)
            bags.appendExample(group: group, excluding: nil)
            history = .leaveOneOut(bags)
        }
        userRows.append(Int32(userRow))
        targets.append(known[position])
    }

    /// Grouped form: adds the known items of one user as a group (shared by that user's examples) and returns it.
    @discardableResult
    public mutating func appendUser(known: [Int32]) -> Int {
        guard case .leaveOneOut(var bags) = history else { preconditionFailure("appendUser needs a grouped batch") }
        history = .bags(IndexBags())
        let group = bags.appendGroup(known[...])
        history = .leaveOneOut(bags)
        return group
    }

    /// Grouped form: appends the example "predict item `position` of `group` from the group's other items"
    /// (the uncut leave-one-out history, as `append(known:position:userRow:maxHistory: nil)`).
    public mutating func appendExample(group: Int, position: Int, userRow: Int) {
        guard case .leaveOneOut(var bags) = history else { preconditionFailure("appendExample needs a grouped batch") }
        history = .bags(IndexBags())
        bags.appendExample(group: group, excluding: position)
        targets.append(bags.groups.indices[Int(bags.groups.offsets[group]) + position])
        history = .leaveOneOut(bags)
        userRows.append(Int32(userRow))
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
