/// A source of candidates.
public enum RecallChannel: String, Sendable, Codable, CaseIterable, Comparable {
    /// The two-tower score (cosine of user and item embeddings).
    case embedding
    /// Items similar by content features (cosine) to the history; the route for items nobody interacted with.
    case content
    /// Most-interacted items of training (cold users, short histories); score = count / the top count.
    case popularity

    public static func < (a: RecallChannel, b: RecallChannel) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// Shares of K per channel (non-negative; normalised over the channels available for a request).
public struct ChannelQuotas: Sendable, Equatable, Codable {
    public var embedding: Double
    public var content: Double
    public var popularity: Double

    public init(embedding: Double = 0, content: Double = 0, popularity: Double = 0) {
        self.embedding = embedding
        self.content = content
        self.popularity = popularity
    }

    public subscript(channel: RecallChannel) -> Double {
        get {
            switch channel {
            case .embedding: embedding
            case .content: content
            case .popularity: popularity
            }
        }
        set {
            switch channel {
            case .embedding: embedding = newValue
            case .content: content = newValue
            case .popularity: popularity = newValue
            }
        }
    }

    /// The largest share `parse` takes: shares are relative, and slots are counted in `Int` (a share near
    /// `Double.greatestFiniteMagnitude` would overflow their sum).
    public static let maximumShare = 1_000_000.0

    /// Parses `embedding=0.8,content=0.2` (unnamed channels get 0; shares in 0...`maximumShare`).
    public static func parse(_ text: String) throws(RecallError) -> ChannelQuotas {
        var quotas = ChannelQuotas()
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count == 2, let channel = RecallChannel(rawValue: pieces[0]), let share = Double(pieces[1]),
                (0...maximumShare).contains(share)
            else {
                throw RecallError(
                    code: .invalidRequest,
                    message: "quota '\(part)' is not CHANNEL=SHARE with a channel among embedding, content, popularity "
                        + "and a share in 0...\(Int(maximumShare))")
            }
            quotas[channel] = share
        }
        guard RecallChannel.allCases.contains(where: { quotas[$0] > 0 }) else {
            throw RecallError(code: .invalidRequest, message: "quotas '\(text)' give no channel a positive share")
        }
        return quotas
    }

    /// Whole slots per channel out of `k` by largest remainder over `available` channels (ties: channel order).
    func slots(k: Int, available: Set<RecallChannel>) -> [RecallChannel: Int] {
        let channels = RecallChannel.allCases.filter { available.contains($0) && self[$0] > 0 }
        let total = channels.reduce(0) { $0 + self[$1] }
        guard total > 0 else { return [:] }
        var slots: [RecallChannel: Int] = [:]
        var remainders: [(RecallChannel, Double)] = []
        var used = 0
        for channel in channels {
            let exact = Double(k) * self[channel] / total
            slots[channel] = Int(exact.rounded(.down))
            used += slots[channel]!
            remainders.append((channel, exact - exact.rounded(.down)))
        }
        remainders.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        for (channel, _) in remainders.prefix(k - used) { slots[channel]! += 1 }
        return slots
    }
}

/// How candidates are gathered and merged.
///
/// A request's history decides its quotas: `warm` with at least `shortHistoryLength` items the model was trained
/// on, `short` with fewer (but some), `cold` with none (an empty history, or only items added after training).
/// Each channel proposes its best candidates that pass the filters (seen items unless `excludeSeen` is false,
/// the request's exclude list, `minimumScore` for the cosine channels); the channel's slots are filled from its
/// list in order, skipping items already taken (de-duplication); slots a channel cannot fill go to the other
/// channels' next candidates. The merged list interleaves channels in proportion to their slots. A cold request
/// under the default cold quotas on a model without item popularity (one trained under differential privacy)
/// is served by the embedding channel: the user tower on the empty history.
public struct RecallConfiguration: Sendable, Equatable {
    public var k: Int = 10
    public var warm = ChannelQuotas(embedding: 1)
    public var short = ChannelQuotas(embedding: 0.6, content: 0.2, popularity: 0.2)
    public var cold = RecallConfiguration.defaultColdQuotas
    /// The cold quotas unless set: popularity and the popularity-weighted content profile.
    public static let defaultColdQuotas = ChannelQuotas(content: 0.5, popularity: 0.5)
    public var shortHistoryLength = 5
    /// Minimum cosine for the embedding and content channels (nil: none).
    public var minimumScore: Float? = nil
    public var excludeSeen = true

    public init() {}

    public func validate() throws(RecallError) {
        guard k > 0 else { throw RecallError(code: .invalidRequest, message: "k must be positive, got \(k)") }
        guard shortHistoryLength >= 1 else {
            throw RecallError(code: .invalidRequest, message: "the short-history length must be at least 1")
        }
        if let minimumScore, !minimumScore.isFinite {
            throw RecallError(code: .invalidRequest, message: "the minimum score must be a finite number")
        }
    }
}

/// One recall query: a history and items to leave out, as catalogue indices.
public struct RecallRequest: Sendable, Equatable {
    public var history: [Int32]
    public var exclude: [Int32]
    /// The user's feature row (columns of the model's user features), when the model takes user features.
    public var userFeatures: [(column: Int32, value: Float)]
    /// Overrides the configuration's K for this request.
    public var k: Int?

    public init(history: [Int32], exclude: [Int32] = [], userFeatures: [(column: Int32, value: Float)] = [], k: Int? = nil) {
        self.history = history
        self.exclude = exclude
        self.userFeatures = userFeatures
        self.k = k
    }

    public static func == (a: RecallRequest, b: RecallRequest) -> Bool {
        a.history == b.history && a.exclude == b.exclude && a.k == b.k
            && a.userFeatures.map(\.column) == b.userFeatures.map(\.column)
            && a.userFeatures.map(\.value) == b.userFeatures.map(\.value)
    }
}

/// One recalled item.
public struct RecalledItem: Sendable, Equatable {
    public var item: Int32
    /// The score of the channel that placed it (cosine, or popularity share).
    public var score: Float
    /// The channel that placed it.
    public var channel: RecallChannel
    /// Every channel that proposed it (de-duplicated into this one entry), in channel order.
    public var channels: [RecallChannel]
}

/// The quota state of a request.
public enum HistoryState: String, Sendable, Codable {
    case warm, short, cold
}

/// The answer to one request.
public struct RecallResult: Sendable, Equatable {
    public var items: [RecalledItem]
    public var state: HistoryState
    /// Channels that could serve the request.
    public var channels: [RecallChannel]
}

/// Merges per-channel candidate lists under slots (pure; see `RecallConfiguration`).
public enum RecallMerger {
    /// - Parameters:
    ///   - candidates: per channel, filtered candidates best first (no duplicates within a list).
    ///   - slots: per channel, its share of `k`.
    ///   - proposals: every channel's list, for `RecalledItem.channels` (nil: `candidates`); a channel that ran
    ///     without slots still counts as proposing its items.
    public static func merge(
        candidates: [RecallChannel: [(item: Int32, score: Float)]], slots: [RecallChannel: Int], k: Int,
        proposals: [RecallChannel: [(item: Int32, score: Float)]]? = nil
    ) -> [RecalledItem] {
        var proposers: [Int32: [RecallChannel]] = [:]
        for channel in RecallChannel.allCases {
            for candidate in (proposals ?? candidates)[channel] ?? [] {
                proposers[candidate.item, default: []].append(channel)
            }
        }
        var taken = Set<Int32>()
        var picks: [(key: Double, channel: RecallChannel, item: RecalledItem)] = []
        var cursor: [RecallChannel: Int] = [:]
        func next(_ channel: RecallChannel) -> (item: Int32, score: Float)? {
            let list = candidates[channel] ?? []
            var position = cursor[channel, default: 0]
            while position < list.count, taken.contains(list[position].item) { position += 1 }
            cursor[channel] = position + 1
            return position < list.count ? list[position] : nil
        }
        for channel in RecallChannel.allCases {
            let quota = slots[channel] ?? 0
            var filled = 0
            while filled < quota, picks.count < k, let candidate = next(channel) {
                taken.insert(candidate.item)
                let key = (Double(filled) + 0.5) / Double(quota)
                picks.append(
                    (key, channel,
                     RecalledItem(item: candidate.item, score: candidate.score, channel: channel, channels: proposers[candidate.item] ?? [channel])))
                filled += 1
            }
        }
        // Slots a channel could not fill: the other channels' next candidates, round robin in channel order.
        var round = 0
        while picks.count < k {
            var progressed = false
            for channel in RecallChannel.allCases where picks.count < k {
                guard let candidate = next(channel) else { continue }
                taken.insert(candidate.item)
                picks.append(
                    (2 + Double(round), channel,
                     RecalledItem(item: candidate.item, score: candidate.score, channel: channel, channels: proposers[candidate.item] ?? [channel])))
                progressed = true
            }
            if !progressed { break }
            round += 1
        }
        return picks.enumerated().sorted { a, b in
            if a.element.key != b.element.key { return a.element.key < b.element.key }
            if a.element.channel != b.element.channel { return a.element.channel < b.element.channel }
            return a.offset < b.offset
        }.map(\.element.item)
    }
}
