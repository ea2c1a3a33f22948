/// One kept user's interactions split per `fedrec-eval-v1`.
///
/// Invariants: `train` and `test` hold catalogue item indices in protocol order (timestamp ascending,
/// then item id as a byte string; FNV-1a order without timestamps); `test.count == (n + 4) / 5`
/// for `n = train.count + test.count`; the two are disjoint.
public struct SplitUser: Sendable, Equatable {
    /// Index into `Dataset.userIDs`.
    public let userIndex: Int
    public let train: [Int32]
    public let test: [Int32]

    public init(userIndex: Int, train: [Int32], test: [Int32]) {
        self.userIndex = userIndex
        self.train = train
        self.test = test
    }

    /// Size of the validation slice: `ceil(0.1 * train.count)`.
    public var validationCount: Int { ProtocolOrder.validationCount(train.count) }
    /// Training minus the validation slice (what a model is fitted on while tuning).
    public var fit: ArraySlice<Int32> { train.dropLast(validationCount) }
    /// The last `validationCount` training interactions (the truth while tuning).
    public var validation: ArraySlice<Int32> { train.suffix(validationCount) }
}

/// Which held-out slice a run fits against.
public enum Fold: String, Sendable, CaseIterable {
    /// Fit on train minus validation, score against the validation slice (tuning, early stopping).
    case validation
    /// Fit on the full training set, score against the test set (final figures).
    case test
}

/// What a model sees for one user in one fold.
public struct FoldUser: Sendable, Equatable {
    public let userIndex: Int
    /// Items the model may train on; excluded from the ranking. Protocol order.
    public let known: [Int32]
    /// Held-out truth.
    public let heldOut: [Int32]

    public init(userIndex: Int, known: [Int32], heldOut: [Int32]) {
        self.userIndex = userIndex
        self.known = known
        self.heldOut = heldOut
    }
}

/// The per-user temporal split of a data set (`fedrec-eval-v1`).
public struct Split: Sendable, Equatable {
    /// Kept users, in byte order of their id string.
    public let users: [SplitUser]

    public init(users: [SplitUser]) {
        self.users = users
    }

    /// Every kept user's known and held-out items for `fold`.
    public func fold(_ fold: Fold) -> [FoldUser] {
        users.map { user in
            switch fold {
            case .validation:
                FoldUser(userIndex: user.userIndex, known: Array(user.fit), heldOut: Array(user.validation))
            case .test:
                FoldUser(userIndex: user.userIndex, known: user.train, heldOut: user.test)
            }
        }
    }
}
