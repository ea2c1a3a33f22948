public import FedRecModel
import FedRecTensor

/// Recall for histories: the embedding, content and popularity channels over a `RecallCatalogue`, merged by
/// `RecallMerger` under the quotas of `RecallConfiguration`. Synchronous and free of I/O; safe to share.
public struct Recommender: Sendable {
    public let catalogue: RecallCatalogue
    public let model: TwoTowerModel
    public let index: any ItemIndex
    /// Content-row norms (nil without content features).
    let contentNorms: [Float]?
    /// Items with a positive popularity, most popular first (ties: lower index).
    let popularityOrder: [Int32]
    let topPopularity: Float
    /// Popularity-weighted mean content row: the profile of a user with no usable history.
    let coldProfile: [Float]?

    /// `index` defaults to an `ExactIndex` over the catalogue's embeddings; it must index exactly those rows.
    public init(catalogue: RecallCatalogue, model: TwoTowerModel, index: (any ItemIndex)? = nil) {
        precondition(catalogue.trainedCount == model.configuration.itemCount, "the catalogue is not the model's")
        let index = index ?? ExactIndex(items: catalogue.embeddings)
        precondition(index.count == catalogue.count && index.dimension == catalogue.embeddings.columns, "the index does not cover the catalogue")
        self.catalogue = catalogue
        self.model = model
        self.index = index
        if let popularity = catalogue.popularity {
            popularityOrder = popularity.indices.filter { popularity[$0] > 0 }
                .sorted { popularity[$0] != popularity[$1] ? popularity[$0] > popularity[$1] : $0 < $1 }.map { Int32($0) }
            topPopularity = popularityOrder.first.map { popularity[Int($0)] } ?? 0
        } else {
            popularityOrder = []
            topPopularity = 0
        }
        if let content = catalogue.content {
            var norms = [Float](repeating: 0, count: content.rows)
            for r in 0..<content.rows {
                var sum: Float = 0
                for j in Int(content.rowOffsets[r])..<Int(content.rowOffsets[r + 1]) { sum += content.values[j] * content.values[j] }
                norms[r] = sum.squareRoot()
            }
            contentNorms = norms
            if let popularity = catalogue.popularity, topPopularity > 0 {
                var profile = [Float](repeating: 0, count: content.columns)
                for r in 0..<content.rows where popularity[r] > 0 && norms[r] > 0 {
                    for j in Int(content.rowOffsets[r])..<Int(content.rowOffsets[r + 1]) {
                        profile[Int(content.indices[j])] += popularity[r] * content.values[j] / norms[r]
                    }
                }
                coldProfile = profile
            } else {
                coldProfile = nil
            }
        } else {
            contentNorms = nil
            coldProfile = nil
        }
    }

    /// The quota state of a history.
    public func state(of history: [Int32], configuration: RecallConfiguration) -> HistoryState {
        let trained = Set(history.filter { Int($0) < catalogue.trainedCount }).count
        if trained == 0 { return .cold }
        return trained >= configuration.shortHistoryLength ? .warm : .short
    }

    /// Recalls for every request (one batched index search for the embedding channel).
    public func recommend(_ requests: [RecallRequest], configuration: RecallConfiguration) throws(RecallError) -> [RecallResult] {
        try configuration.validate()
        let n = catalogue.count
        for request in requests {
            if let k = request.k, k <= 0 { throw RecallError(code: .invalidRequest, message: "k must be positive, got \(k)") }
            for item in request.history + request.exclude where item < 0 || Int(item) >= n {
                throw RecallError(code: .unknownItem, message: "item index \(item) is outside the catalogue of \(n)")
            }
        }

        // Plan: state, slots and exclusions per request.
        struct Plan {
            var state: HistoryState
            var slots: [RecallChannel: Int]
            var available: [RecallChannel]
            var excluded: Set<Int32>
            var k: Int
            var contentProfile: [Float]?
        }
        var plans: [Plan] = []
        for request in requests {
            let state = state(of: request.history, configuration: configuration)
            let quotas: ChannelQuotas =
                switch state {
                case .warm: configuration.warm
                case .short: configuration.short
                case .cold: configuration.cold
                }
            var available: Set<RecallChannel> = [.embedding]
            if topPopularity > 0 { available.insert(.popularity) }
            let profile = contentProfile(history: request.history)
            if profile != nil { available.insert(.content) }
            // No list is longer than the catalogue; clamped, no later sum (k plus the excluded) can overflow.
            let k = min(request.k ?? configuration.k, n)
            var slots = quotas.slots(k: k, available: available)
            if slots.isEmpty && state == .cold && quotas == RecallConfiguration.defaultColdQuotas {
                // The default cold channels need item popularity (a model released under differential privacy has
                // none; the cold content profile is popularity-weighted): the user tower on an empty history, the
                // model's own prior over the catalogue, serves the cold user instead. Quotas asked for explicitly
                // are not replaced.
                slots = [.embedding: k]
            }
            guard !slots.isEmpty else {
                let missing = RecallChannel.allCases.filter { quotas[$0] > 0 && !available.contains($0) }.map {
                    channel in
                    switch channel {
                    case .popularity: "the popularity channel needs item popularity"
                    case .content:
                        "the content channel needs content features and a history item that has some (or item "
                            + "popularity, for a history without one)"
                    case .embedding: "the embedding channel needs a history item the model was trained on"
                    }
                }
                throw RecallError(
                    code: .noChannel,
                    message: "no channel of the \(state) quotas can serve this request: "
                        + missing.joined(separator: "; ") + ", which this model file or history does not have")
            }
            var excluded = Set(request.exclude)
            if configuration.excludeSeen { excluded.formUnion(request.history) }
            plans.append(
                Plan(
                    state: state, slots: slots, available: RecallChannel.allCases.filter { available.contains($0) },
                    excluded: excluded, k: k, contentProfile: profile))
        }

        // Embedding channel: one batched user-tower pass and index search for the requests that give it slots
        // (and, below, one more for requests the other channels leave short).
        var embeddingCandidates: [Int: [(item: Int32, score: Float)]] = [:]
        func searchEmbeddings(for indices: [Int]) throws(RecallError) {
            guard !indices.isEmpty else { return }
            let queries = userEmbeddings(requests: indices.map { requests[$0] })
            // Item embeddings are checked unit rows at load; a user tower with finite but absurd weights can still
            // overflow, and a NaN score would rank first and leave the JSON answer unencodable.
            guard FastMath.allFinite(queries.storage) else {
                throw RecallError(
                    code: .corruptModel,
                    message: "the model's user tower gives a non-finite embedding: the model file is damaged")
            }
            let fetch = min(n, indices.map { plans[$0].k + plans[$0].excluded.count }.max()!)
            let results = try index.search(queries, k: fetch)
            for (row, r) in indices.enumerated() {
                var list: [(item: Int32, score: Float)] = []
                for (item, score) in results.row(row) where !plans[r].excluded.contains(item) {
                    if let minimum = configuration.minimumScore, score < minimum { break }
                    list.append((item, score))
                    if list.count == plans[r].k { break }
                }
                embeddingCandidates[r] = list
            }
        }
        try searchEmbeddings(for: plans.indices.filter { (plans[$0].slots[.embedding] ?? 0) > 0 })

        var candidatesOf: [[RecallChannel: [(item: Int32, score: Float)]]] = []
        var itemsOf: [[RecalledItem]] = []
        for (r, plan) in plans.enumerated() {
            var candidates: [RecallChannel: [(item: Int32, score: Float)]] = [:]
            candidates[.embedding] = embeddingCandidates[r] ?? []
            if (plan.slots[.popularity] ?? 0) > 0 || plan.available.contains(.popularity) {
                candidates[.popularity] = popularCandidates(k: plan.k, excluded: plan.excluded)
            }
            if let profile = plan.contentProfile {
                candidates[.content] = contentCandidates(
                    profile: profile, k: plan.k, excluded: plan.excluded, minimum: configuration.minimumScore)
            }
            // Only channels with slots take part (a channel without slots does not fill others' gaps
            // unless every slotted channel ran dry; then the rest fill in channel order).
            var slotted: [RecallChannel: [(item: Int32, score: Float)]] = [:]
            for channel in plan.slots.keys { slotted[channel] = candidates[channel] }
            itemsOf.append(RecallMerger.merge(candidates: slotted, slots: plan.slots, k: plan.k, proposals: candidates))
            candidatesOf.append(candidates)
        }
        // Requests the slotted channels left short whose embedding channel had no slots: it fills their gaps too
        // (the only channel a model released under DP, without item popularity, has left to fill them).
        let short = plans.indices.filter { itemsOf[$0].count < plans[$0].k && embeddingCandidates[$0] == nil }
        try searchEmbeddings(for: short)
        for r in short { candidatesOf[r][.embedding] = embeddingCandidates[r] ?? [] }

        var out: [RecallResult] = []
        for (r, plan) in plans.enumerated() {
            let candidates = candidatesOf[r]
            var items = itemsOf[r]
            if items.count < plan.k {
                let taken = Set(items.map(\.item))
                var rest = candidates
                for channel in RecallChannel.allCases { rest[channel] = rest[channel]?.filter { !taken.contains($0.item) } }
                for channel in plan.slots.keys { rest[channel] = [] }
                let fill = RecallMerger.merge(
                    candidates: rest, slots: [:], k: plan.k - items.count, proposals: candidates)
                items += fill
            }
            out.append(RecallResult(items: items, state: plan.state, channels: plan.available))
        }
        return out
    }

    // MARK: Channels

    /// Normalised user embeddings of the requests' trained history items (cut to the model's `maxHistory`).
    func userEmbeddings(requests: [RecallRequest]) -> Matrix {
        let configuration = model.configuration
        let histories: [[Int32]] = requests.map { request in
            let trained = request.history.filter { Int($0) < catalogue.trainedCount }
            return configuration.maxHistory.map { Array(trained.suffix($0)) } ?? trained
        }
        var features: SparseMatrix? = nil
        if configuration.userFeatureCount > 0 {
            let rows = requests.map { request in
                request.userFeatures.filter { $0.column >= 0 && Int($0.column) < configuration.userFeatureCount }
                    .sorted { $0.column < $1.column }.map { (column: Int($0.column), value: $0.value) }
            }
            features = SparseMatrix(columns: configuration.userFeatureCount, rows: rows)
        }
        return model.userEmbeddings(histories: histories, userFeatures: features, userRows: nil)
    }

    /// The most popular items not excluded.
    func popularCandidates(k: Int, excluded: Set<Int32>) -> [(item: Int32, score: Float)] {
        guard let popularity = catalogue.popularity, topPopularity > 0 else { return [] }
        var list: [(item: Int32, score: Float)] = []
        for item in popularityOrder where !excluded.contains(item) {
            list.append((item, popularity[Int(item)] / topPopularity))
            if list.count == k { break }
        }
        return list
    }

    /// The content profile of a history: the sum of its items' unit content rows; the cold profile when the
    /// history has no content; nil without content features.
    func contentProfile(history: [Int32]) -> [Float]? {
        guard let content = catalogue.content, let norms = contentNorms else { return nil }
        var profile = [Float](repeating: 0, count: content.columns)
        var any = false
        for item in history where norms[Int(item)] > 0 {
            let r = Int(item)
            for j in Int(content.rowOffsets[r])..<Int(content.rowOffsets[r + 1]) {
                profile[Int(content.indices[j])] += content.values[j] / norms[r]
            }
            any = true
        }
        return any ? profile : coldProfile
    }

    /// Items by content cosine to `profile`, best first (ties: lower index); only positive similarities.
    func contentCandidates(profile: [Float], k: Int, excluded: Set<Int32>, minimum: Float?) -> [(item: Int32, score: Float)] {
        guard let content = catalogue.content, let norms = contentNorms else { return [] }
        let profileNorm = profile.reduce(0) { $0 + $1 * $1 }.squareRoot()
        guard profileNorm > 0 else { return [] }
        var scores = [Float](repeating: -.infinity, count: content.rows)
        for r in 0..<content.rows where norms[r] > 0 {
            var dot: Float = 0
            for j in Int(content.rowOffsets[r])..<Int(content.rowOffsets[r + 1]) {
                dot += content.values[j] * profile[Int(content.indices[j])]
            }
            scores[r] = dot / (norms[r] * profileNorm)
        }
        let mask = IndexMask(count: content.rows, containing: excluded.map { Int($0) })
        var list: [(item: Int32, score: Float)] = []
        for item in TopK.select(scores, k: min(k, content.rows), excluding: mask) {
            let score = scores[item]
            guard score > 0, score >= (minimum ?? -.infinity) else { break }
            list.append((Int32(item), score))
        }
        return list
    }
}
