/// Each user's interactions in `fedrec-eval-v1` protocol order.
///
/// Order: timestamp ascending (as a signed integer), then item id ascending compared as UTF-8 bytes.
/// Without timestamps: `fnv1a64(user_id + "|" + item_id)` ascending, then item id as bytes.
/// Invariant: `rows[offsets[u]..<offsets[u + 1]]` are the interaction indices of user `u`.
struct ProtocolOrder {
    let offsets: [Int]
    let rows: [Int32]

    init(content: DatasetContent) {
        self.init(
            interactions: content.interactions, userIDs: content.userIDs, itemIDs: content.itemIDs,
            hasTimestamps: content.hasTimestamps)
    }

    init(interactions: Interactions, userIDs: [String], itemIDs: [String], hasTimestamps: Bool) {
        // Rank of every catalogue item in byte order of its id.
        let byBytes = itemIDs.indices.sorted { byteLess(itemIDs[$0], itemIDs[$1]) }
        var rank = [Int32](repeating: 0, count: itemIDs.count)
        for (position, item) in byBytes.enumerated() { rank[item] = Int32(position) }

        // Counting sort of interaction indices by user (stable: file order within a user).
        var offsets = [Int](repeating: 0, count: userIDs.count + 1)
        for user in interactions.users { offsets[Int(user) + 1] += 1 }
        for u in 0..<userIDs.count { offsets[u + 1] += offsets[u] }
        var cursor = offsets
        var rows = [Int32](repeating: 0, count: interactions.count)
        for (index, user) in interactions.users.enumerated() {
            rows[cursor[Int(user)]] = Int32(index)
            cursor[Int(user)] += 1
        }

        var keyed: [(key: UInt64, rank: Int32, row: Int32)] = []
        for u in 0..<userIDs.count {
            let range = offsets[u]..<offsets[u + 1]
            keyed.removeAll(keepingCapacity: true)
            let userSeed = hasTimestamps ? 0 : fnv1a64(userIDs[u].utf8 + [0x7C])
            for r in range {
                let row = Int(rows[r])
                let item = Int(interactions.items[row])
                let key: UInt64
                if hasTimestamps {
                    // Flip the sign bit: unsigned order of the result is signed order of the timestamp.
                    key = UInt64(bitPattern: interactions.timestamps[row]) ^ (1 << 63)
                } else {
                    key = fnv1a64(itemIDs[item].utf8, seed: userSeed)
                }
                keyed.append((key, rank[item], Int32(row)))
            }
            keyed.sort { $0.key != $1.key ? $0.key < $1.key : $0.rank < $1.rank }
            for (offset, entry) in keyed.enumerated() { rows[range.lowerBound + offset] = entry.row }
        }
        self.offsets = offsets
        self.rows = rows
    }

    /// Number of test interactions for a user with `n` interactions: `ceil(0.2 n)`.
    @inline(__always) static func testCount(_ n: Int) -> Int { (n + 4) / 5 }

    /// Size of the validation slice of `trainCount` training interactions: `ceil(0.1 trainCount)`.
    @inline(__always) static func validationCount(_ trainCount: Int) -> Int { (trainCount + 9) / 10 }

    /// The split: per user, the first `n - testCount(n)` items train, the rest test.
    func split(items: [Int32]) -> Split {
        var users: [SplitUser] = []
        users.reserveCapacity(offsets.count - 1)
        for u in 0..<(offsets.count - 1) {
            let ordered = rows[offsets[u]..<offsets[u + 1]].map { items[Int($0)] }
            let cut = ordered.count - Self.testCount(ordered.count)
            users.append(SplitUser(userIndex: u, train: Array(ordered[..<cut]), test: Array(ordered[cut...])))
        }
        return Split(users: users)
    }
}

extension Split {
    /// The `fedrec-eval-v1` split of `content`'s interactions.
    public init(content: DatasetContent) {
        self = ProtocolOrder(content: content).split(items: content.interactions.items)
    }

    /// Counts for reports: interactions in train, test, fit (train minus validation) and validation,
    /// and the number of catalogue items with at least one training interaction.
    public struct Counts: Sendable, Equatable {
        public var users = 0
        public var train = 0
        public var test = 0
        public var fit = 0
        public var validation = 0
        public var itemsWithTrain = 0
    }

    /// Counts of this split.
    public var counts: Counts {
        var counts = Counts()
        var seen = Set<Int32>()
        for user in users {
            counts.users += 1
            counts.train += user.train.count
            counts.test += user.test.count
            counts.validation += user.validationCount
            counts.fit += user.train.count - user.validationCount
            seen.formUnion(user.train)
        }
        counts.itemsWithTrain = seen.count
        return counts
    }
}
