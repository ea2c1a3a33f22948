public import FedRecSecurity

/// The coordinator's side of a SecAgg+ round: a pure state machine, no I/O and no clock. The caller feeds each
/// arriving message to `receive`, and when a stage's deadline passes (or every expected client answered) calls
/// that stage's `close…`, which returns what to relay.
///
/// Sets: U1 = clients whose advertised keys verified (the roster), U2 ⊆ U1 clients whose encrypted shares were
/// accepted and relayed, U3 ⊆ U2 clients whose masked input was summed (the survivors), U4 ⊆ U3 responders.
/// Invariants:
/// - a message is accepted only from a member of the previous stage's set, once, for this round;
/// - every member of U1 and U2 has at least t neighbours in the same set (members that do not are excluded
///   at the close, repeatedly until none is left), so every relayed secret had t potential holders;
/// - pair (i, j) of neighbours in U2 is masked by both or by neither, so the pairwise masks of U3 pairs cancel;
///   those between a survivor and a client of U2 \ U3 are removed from the reconstructed masking key;
/// - the self-mask seed of a client is requested only if it is in U3, its masking key only if it is not:
///   never both;
/// - the masked inputs are summed as they arrive (O(L) memory, not O(n·L)); the total work is O(n·L) for the
///   sum plus O((|U3| + Σ_{d dropped} |N(d) ∩ U3|)·L) mask expansions, i.e. O(n·k·L) at worst, never O(n²·L).
public struct SecureAggregationServer: Sendable {
    private enum Stage: Sendable, CustomStringConvertible {
        case advertising, sharing, masking, unmasking, finished
        case aborted(SecureAggregationError)

        var description: String {
            switch self {
            case .advertising: "collecting advertised keys"
            case .sharing: "collecting encrypted shares"
            case .masking: "collecting masked inputs"
            case .unmasking: "collecting unmask responses"
            case .finished: "finished"
            case .aborted(let error): "aborted (\(error))"
            }
        }
    }

    public let parameters: SecureAggregationParameters
    private let identityKeys: [SigningPublicKey]
    private let graph: NeighbourGraph
    private let digest: [UInt8]
    private var stage = Stage.advertising

    private var advertised: [Int: AdvertisedKeys] = [:]
    private var roster: Roster?
    private var rosterMembers = Set<Int>()
    private var submittedShares: [Int: [EncryptedShare]] = [:]
    private var sharers = Set<Int>()
    private var maskedSum: [UInt32] = []
    private var maskedSenders = Set<Int>()
    /// owner -> holders that reported the owner's share to them as tampered (they hold no share of it).
    private var reportedShares: [Int: Set<Int>] = [:]
    private var request: UnmaskRequest?
    private var selfMaskShares: [Int: [SecretShare]] = [:]
    private var maskingKeyShares: [Int: [SecretShare]] = [:]
    private var responders = Set<Int>()
    private var dropped: [Int: SecureAggregationStage] = [:]
    private var excluded: [Int: SecureAggregationError] = [:]

    /// The rejections and reports so far, in order: the most recent ones, and how many in all (a client that
    /// repeats a refused message cannot grow the coordinator's memory).
    public private(set) var rejections = BoundedLog<SecureAggregationError>()

    /// Whether participant `index` has been excluded from the round (a refused message, or too few neighbours
    /// left); it is not waited for in any later stage.
    public func isExcluded(_ index: Int) -> Bool { excluded[index] != nil }

    /// Throws `invalidParameters` for bad parameters or an identity-key list of the wrong length.
    public init(parameters: SecureAggregationParameters, identityKeys: [SigningPublicKey]) throws {
        try parameters.validate()
        guard identityKeys.count == parameters.participants.count else {
            throw SecureAggregationError(
                code: .invalidParameters,
                message: "\(identityKeys.count) identity keys for \(parameters.participants.count) participants")
        }
        self.parameters = parameters
        self.identityKeys = identityKeys
        self.graph = parameters.graph
        self.digest = try parameters.digest()
    }

    private var n: Int { parameters.participants.count }
    private var t: Int { parameters.threshold }

    // MARK: Stage 1

    /// Accepts one client's advertised keys. Throws (and records) `wrongStage`, `wrongRound`, `unknownSender`,
    /// `duplicateMessage`, `invalidSignature` or `invalidKey` (an unusable X25519 key; with a bad signature, the
    /// sender is then excluded from the round).
    public mutating func receive(_ keys: AdvertisedKeys) throws {
        if let refusal = stageRefusal(.advertiseKeys, round: keys.round) ?? advertiseRefusal(keys) {
            try refuse(refusal, stage: .advertiseKeys, sender: keys.index)
        }
        advertised[keys.index] = keys
    }

    private func advertiseRefusal(_ keys: AdvertisedKeys) -> Refusal? {
        guard (0..<n).contains(keys.index), excluded[keys.index] == nil else {
            return (.unknownSender, "not a participant of this round (or already excluded)", false)
        }
        guard advertised[keys.index] == nil else { return (.duplicateMessage, "keys already advertised", false) }
        do {
            try keys.verify(identityKey: identityKeys[keys.index], parametersDigest: digest)
        } catch {
            return (.invalidSignature, "\(error)", true)
        }
        // A key no neighbour can exchange with (a small-order point) would make every honest neighbour drop this
        // client and send one share too few, for which the coordinator would exclude them: the advertiser goes.
        for (name, key) in [("encryption", keys.encryptionKey), ("masking", keys.maskingKey)]
        where !key.isUsableForKeyExchange {
            return (.invalidKey, "the advertised \(name) key is a small-order X25519 point", true)
        }
        return nil
    }

    /// Ends stage 1: U1 = verified advertisers, less those left with fewer than t neighbours in U1. Returns the
    /// roster to send to every member of U1. Throws `roundAborted` when fewer than `minimumSurvivorCount` remain.
    public mutating func closeAdvertiseKeys() throws -> Roster {
        try expect(.advertising, .advertiseKeys)
        for index in 0..<n where advertised[index] == nil && excluded[index] == nil { dropped[index] = .advertiseKeys }
        let members = prune(Set(advertised.keys), stage: .advertiseKeys)
        try requireSurvivors(members.count, .advertiseKeys, before: advertised.count)
        let roster = try Roster(round: parameters.round, entries: members.map { advertised[$0]! })
        self.roster = roster
        rosterMembers = Set(members)
        advertised = [:]
        stage = .sharing
        return roster
    }

    // MARK: Stage 2

    /// Accepts the encrypted shares of `sender`: exactly one per neighbour in the roster, each from `sender`, of
    /// this round. Anything else throws `invalidShares` (recorded; the sender is excluded).
    public mutating func receive(_ shares: [EncryptedShare], from sender: Int) throws {
        if let refusal = stageRefusal(.shareKeys, round: parameters.round) ?? sharesRefusal(shares, from: sender) {
            try refuse(refusal, stage: .shareKeys, sender: sender)
        }
        submittedShares[sender] = shares
    }

    private func sharesRefusal(_ shares: [EncryptedShare], from sender: Int) -> Refusal? {
        guard rosterMembers.contains(sender), excluded[sender] == nil else {
            return (.unknownSender, "not in the roster (U1)", false)
        }
        guard submittedShares[sender] == nil else { return (.duplicateMessage, "shares already received", false) }
        let expected = Set(graph.neighbours(of: sender).filter(rosterMembers.contains))
        var seen = Set<Int>()
        for share in shares {
            guard share.round == parameters.round else {
                return (.wrongRound, "a share of round \(share.round)", true)
            }
            guard share.sender == sender else {
                return (.invalidShares, "a share claims sender \(share.sender)", true)
            }
            guard expected.contains(share.recipient) else {
                return (.invalidShares, "a share for \(share.recipient), not a neighbour in the roster", true)
            }
            guard seen.insert(share.recipient).inserted else {
                return (.invalidShares, "two shares for \(share.recipient)", true)
            }
        }
        guard seen.count == expected.count else {
            return (.invalidShares, "\(seen.count) shares for \(expected.count) neighbours in the roster", true)
        }
        return nil
    }

    /// Ends stage 2: U2 = accepted senders, less those left with fewer than t neighbours in U2. Returns each
    /// member's inbox: the shares addressed to it by other members. Throws `roundAborted` when fewer than
    /// `minimumSurvivorCount` remain.
    public mutating func closeShareKeys() throws -> [Int: [EncryptedShare]] {
        try expect(.sharing, .shareKeys)
        for index in rosterMembers where submittedShares[index] == nil && excluded[index] == nil {
            dropped[index] = .shareKeys
        }
        let members = prune(Set(submittedShares.keys), stage: .shareKeys)
        try requireSurvivors(members.count, .shareKeys, before: submittedShares.count)
        let memberSet = Set(members)
        var inboxes: [Int: [EncryptedShare]] = [:]
        for member in members { inboxes[member] = [] }
        for sender in members {
            for share in submittedShares[sender]! where memberSet.contains(share.recipient) {
                inboxes[share.recipient]!.append(share)
            }
        }
        sharers = memberSet
        submittedShares = [:]
        stage = .masking
        return inboxes
    }

    // MARK: Stage 3

    /// Adds one client's masked input to the running sum. Throws (and records) `wrongStage`, `wrongRound`,
    /// `unknownSender` (not in U2), `duplicateMessage`, or `invalidInput` (wrong length; the sender is excluded).
    /// Its `rejectedSenders` are recorded as `tamperedShare` reports.
    public mutating func receive(_ input: MaskedInput) throws {
        if let refusal = stageRefusal(.maskedInput, round: input.round) ?? maskedInputRefusal(input) {
            try refuse(refusal, stage: .maskedInput, sender: input.index)
        }
        let expectedCount = parameters.vectorLength + 1
        if maskedSum.isEmpty { maskedSum = [UInt32](repeating: 0, count: expectedCount) }
        maskedSum.withUnsafeMutableBufferPointer { sum in
            input.words.withUnsafeBufferPointer { words in
                for index in 0..<expectedCount { sum[index] &+= words[index] }
            }
        }
        maskedSenders.insert(input.index)
        for owner in input.rejectedSenders {
            reportedShares[owner, default: []].insert(input.index)
            rejections.append(
                error(
                    .tamperedShare,
                    "its share to client \(input.index) failed to authenticate (reported by that client)",
                    stage: .shareKeys, client: owner))
        }
    }

    private func maskedInputRefusal(_ input: MaskedInput) -> Refusal? {
        let expectedCount = parameters.vectorLength + 1
        guard sharers.contains(input.index), excluded[input.index] == nil else {
            return (.unknownSender, "did not share keys (not in U2)", false)
        }
        guard !maskedSenders.contains(input.index) else {
            return (.duplicateMessage, "masked input already received", false)
        }
        guard input.words.count == expectedCount else {
            return (.invalidInput, "\(input.words.count) words; the round needs \(expectedCount)", true)
        }
        let neighbours = graph.neighbours(of: input.index)
        guard Set(input.rejectedSenders).count == input.rejectedSenders.count,
            input.rejectedSenders.allSatisfy({ sharers.contains($0) && neighbours.contains($0) })
        else {
            return (.invalidInput, "reports shares from clients that sent it none", true)
        }
        return nil
    }

    /// Ends stage 3: U3 = clients whose masked input was summed. Returns the unmask request for every member of
    /// U3. Throws `roundAborted` (naming the client) when fewer than `minimumSurvivorCount` survive or when some
    /// secret to be revealed has fewer than t potential holders left in U3.
    public mutating func closeMaskedInput() throws -> UnmaskRequest {
        try expect(.masking, .maskedInput)
        let survivors = maskedSenders.sorted()
        let silent = sharers.subtracting(maskedSenders)
        for index in silent where excluded[index] == nil { dropped[index] = .maskedInput }
        try requireSurvivors(survivors.count, .maskedInput)
        let needed = silent.filter { graph.neighbours(of: $0).contains(where: maskedSenders.contains) }.sorted()
        for owner in survivors + needed {
            let holders = potentialHolders(of: owner)
            guard holders >= t else {
                let secret = maskedSenders.contains(owner) ? "self-mask seed" : "masking key"
                throw abort(
                    "only \(holders) surviving neighbour(s) hold shares of its \(secret); \(t) are needed",
                    stage: .maskedInput, client: owner)
            }
        }
        let request = try UnmaskRequest(round: parameters.round, survivors: survivors, dropped: needed)
        self.request = request
        stage = .unmasking
        return request
    }

    // MARK: Stage 4

    /// Accepts one survivor's shares. Every share must be requested, held by a neighbour of its owner that did
    /// not report the owner's share as tampered, and of the requested kind; otherwise the whole response is
    /// refused (`invalidShares`, recorded).
    public mutating func receive(_ response: UnmaskResponse) throws {
        if let refusal = stageRefusal(.unmask, round: response.round) ?? responseRefusal(response) {
            try refuse(refusal, stage: .unmask, sender: response.index)
        }
        for (owner, value) in response.selfMaskShares {
            let number = graph.shareNumber(holder: response.index, owner: owner)!
            selfMaskShares[owner, default: []].append(
                try crypto(.unmask) { try SecretShare(number: number, value: value) })
        }
        for (owner, value) in response.pairwiseMaskShares {
            let number = graph.shareNumber(holder: response.index, owner: owner)!
            maskingKeyShares[owner, default: []].append(
                try crypto(.unmask) { try SecretShare(number: number, value: value) })
        }
        responders.insert(response.index)
    }

    private func responseRefusal(_ response: UnmaskResponse) -> Refusal? {
        let survivors = Set(request?.survivors ?? [])
        let needed = Set(request?.dropped ?? [])
        guard maskedSenders.contains(response.index) else {
            return (.unknownSender, "not a survivor (not in U3)", false)
        }
        guard !responders.contains(response.index) else {
            return (.duplicateMessage, "response already received", false)
        }
        for (owners, requested, what) in [
            (Array(response.selfMaskShares.keys), survivors, "self-mask seed"),
            (Array(response.pairwiseMaskShares.keys), needed, "masking key"),
        ] {
            for owner in owners {
                guard requested.contains(owner) else {
                    return (.invalidShares, "a \(what) share of client \(owner), which was not requested", false)
                }
                guard graph.areNeighbours(owner, response.index),
                    !(reportedShares[owner]?.contains(response.index) ?? false)
                else {
                    return (.invalidShares, "a \(what) share of client \(owner), which it cannot hold", false)
                }
            }
        }
        return nil
    }

    /// Ends the round: reconstructs each survivor's self-mask seed and each needed dropped client's masking key
    /// from t shares (each checked against its advertised commitment or public key), removes those masks from the sum,
    /// and decodes it. Throws `roundAborted` naming the client whose secret has fewer than t shares or does not
    /// reconstruct.
    public mutating func finish() throws -> SecureAggregate {
        try expect(.unmasking, .unmask)
        guard let request, let roster else { throw abort("internal: no request", stage: .unmask, client: nil) }
        for index in maskedSenders where !responders.contains(index) { dropped[index] = .unmask }
        var terms: [MaskTerm] = []
        terms.reserveCapacity(request.survivors.count)
        let digest = self.digest
        for owner in request.survivors {
            let entry = roster[owner]
            guard
                let seed = try reconstruct(
                    selfMaskShares[owner] ?? [], owner: owner, secret: "self-mask seed",
                    accept: { (seed: SecureBytes) -> SecureBytes? in
                        guard let entry,
                            try AdvertisedKeys.commitment(parametersDigest: digest, index: owner, seed: seed)
                                == entry.selfMaskCommitment
                        else { return nil }
                        return seed
                    })
            else {
                throw abort(
                    "no t of the shares rebuild a self-mask seed that matches its commitment (responders sent wrong "
                        + "shares)", stage: .unmask, client: owner)
            }
            terms.append(try crypto(.unmask) { try MaskTerm(seed: seed, negated: true) })
        }
        for owner in request.dropped {
            let entry = roster[owner]
            guard
                let key = try reconstruct(
                    maskingKeyShares[owner] ?? [], owner: owner, secret: "masking key",
                    accept: { (secret: SecureBytes) -> KeyAgreementKey? in
                        guard let entry, let key = try? KeyAgreementKey(secretKey: secret),
                            key.publicKey == entry.maskingKey
                        else { return nil }
                        return key
                    })
            else {
                throw abort(
                    "no t of the shares rebuild a masking key that matches its advertised public key (responders "
                        + "sent wrong shares)", stage: .unmask, client: owner)
            }
            for survivor in graph.neighbours(of: owner) where maskedSenders.contains(survivor) {
                guard let peer = roster[survivor] else { continue }
                let seed = try crypto(.unmask) { try pairwiseSeed(key, peer: peer.maskingKey, lower: owner < survivor) }
                // y_survivor holds +PRG(s) when owner < survivor, -PRG(s) otherwise: apply the opposite.
                terms.append(try crypto(.unmask) { try MaskTerm(seed: seed, negated: owner < survivor) })
            }
        }
        var sum = maskedSum
        try crypto(.unmask) { try MaskGenerator.accumulate(terms, into: &sum) }
        let (weightedSum, totalWeight) = parameters.quantizer.decode(sum)
        stage = .finished
        (selfMaskShares, maskingKeyShares, maskedSum) = ([:], [:], [])
        return SecureAggregate(
            weightedSum: weightedSum, totalWeight: totalWeight, encodedSum: sum, survivors: request.survivors,
            dropped: dropped, excluded: excluded, rejections: rejections)
    }

    // MARK: Helpers

    /// Neighbours of `owner` in U3 that were sent its share and did not report it as tampered.
    private func potentialHolders(of owner: Int) -> Int {
        graph.neighbours(of: owner).count { holder in
            maskedSenders.contains(holder) && !(reportedShares[owner]?.contains(holder) ?? false)
        }
    }

    /// Most t-subsets of one secret's shares tried before giving up (C(k, t) for the default k <= 20 is below
    /// 200,000; each try is a 32-byte combine and a hash or one scalar multiplication).
    static let maximumSubsetsTried = 4096

    /// What `accept` makes of the secret rebuilt from t of `shares` (nil: not the right secret): the t
    /// lowest-numbered first, then other t-subsets in order (at most `maximumSubsetsTried`), so one responder's
    /// wrong share does not abort a round in which t right ones arrived. Each share that disagrees with the
    /// accepted secret is recorded (`invalidShares`, naming its holder). Nil when no subset is accepted;
    /// `roundAborted` when fewer than t arrived.
    private mutating func reconstruct<Accepted>(
        _ shares: [SecretShare], owner: Int, secret: String, accept: (SecureBytes) throws -> Accepted?
    ) throws -> Accepted? {
        guard shares.count >= t else {
            throw abort(
                "only \(shares.count) share(s) of its \(secret) arrived; \(t) are needed", stage: .unmask,
                client: owner)
        }
        let sorted = shares.sorted { $0.number < $1.number }
        var chosen = Array(0..<t)
        var found: (secret: SecureBytes, accepted: Accepted, subset: [Int])? = nil
        for _ in 0..<Self.maximumSubsetsTried {
            let candidate = try crypto(.unmask) { try SecretSharing.combine(chosen.map { sorted[$0] }) }
            if let accepted = try accept(candidate) {
                found = (candidate, accepted, chosen)
                break
            }
            // The next t-subset in lexicographic order.
            var position = t - 1
            while position >= 0 && chosen[position] == sorted.count - t + position { position -= 1 }
            guard position >= 0 else { break }
            chosen[position] += 1
            for next in (position + 1)..<t { chosen[next] = chosen[next - 1] + 1 }
        }
        guard let found else { return nil }
        // A share outside the accepted subset is right iff it rebuilds the same secret with t - 1 of the subset.
        let base = found.subset.prefix(t - 1).map { sorted[$0] }
        let neighbours = graph.neighbours(of: owner)
        for (index, share) in sorted.enumerated() where !found.subset.contains(index) {
            let check = try crypto(.unmask) { try SecretSharing.combine(base + [share]) }
            guard check != found.secret else { continue }
            let holder = Int(share.number) - 1 < neighbours.count ? neighbours[Int(share.number) - 1] : nil
            rejections.append(
                self.error(
                    .invalidShares,
                    "a wrong share of client \(owner)'s \(secret) (share \(share.number)); rebuilt from others",
                    stage: .unmask, client: holder))
        }
        return found.accepted
    }

    /// Removes members with fewer than t neighbours among the members, until none is left to remove.
    private mutating func prune(_ members: Set<Int>, stage: SecureAggregationStage) -> [Int] {
        var members = members
        var changed = true
        while changed {
            changed = false
            for member in members.sorted() {
                let count = graph.neighbours(of: member).count(where: members.contains)
                if count < t {
                    members.remove(member)
                    let error = self.error(
                        .tooFewNeighbours, "only \(count) neighbour(s) left in the stage; threshold is \(t)",
                        stage: stage, client: member)
                    excluded[member] = error
                    rejections.append(error)
                    changed = true
                }
            }
        }
        return members.sorted()
    }

    /// `before`: how many completed the stage before clients with fewer than t neighbours were excluded.
    private mutating func requireSurvivors(_ count: Int, _ stage: SecureAggregationStage, before: Int? = nil) throws {
        guard count >= parameters.minimumSurvivorCount else {
            let pruned = (before ?? count) - count
            let detail =
                pruned > 0 ? " (\(pruned) more were excluded for having fewer than t = \(t) neighbours left)" : ""
            throw abort(
                "only \(count) client(s) completed the stage\(detail); at least \(parameters.minimumSurvivorCount) "
                    + "are needed", stage: stage, client: nil)
        }
    }

    /// A refusal: code, message, and whether the sender is excluded from the round.
    private typealias Refusal = (code: SecureAggregationError.Code, message: String, exclude: Bool)

    /// `wrongStage` when the round is not collecting `messageStage` messages, `wrongRound` for another round.
    private func stageRefusal(_ messageStage: SecureAggregationStage, round: UInt64) -> Refusal? {
        let expected: SecureAggregationStage? =
            switch stage {
            case .advertising: .advertiseKeys
            case .sharing: .shareKeys
            case .masking: .maskedInput
            case .unmasking: .unmask
            case .finished, .aborted: nil
            }
        if expected != messageStage {
            return (.wrongStage, "a '\(messageStage)' message while the round is \(stage)", false)
        }
        if round != parameters.round {
            return (.wrongRound, "a message of round \(round) in round \(parameters.round)", false)
        }
        return nil
    }

    /// Records `refusal`, excludes the sender when it says so, and throws it.
    private mutating func refuse(_ refusal: Refusal, stage messageStage: SecureAggregationStage, sender: Int) throws
        -> Never
    {
        let error = self.error(refusal.code, refusal.message, stage: messageStage, client: sender)
        rejections.append(error)
        if refusal.exclude, (0..<n).contains(sender), excluded[sender] == nil {
            excluded[sender] = error
            dropped[sender] = nil
        }
        throw error
    }

    private func expect(_ expected: Stage, _ stage: SecureAggregationStage) throws {
        switch (self.stage, expected) {
        case (.advertising, .advertising), (.sharing, .sharing), (.masking, .masking), (.unmasking, .unmasking):
            return
        default:
            throw SecureAggregationError(
                code: .wrongStage, message: "cannot close '\(stage)' while the round is \(self.stage)", stage: stage)
        }
    }

    private mutating func abort(_ message: String, stage: SecureAggregationStage, client: Int?)
        -> SecureAggregationError
    {
        let error = self.error(.roundAborted, message, stage: stage, client: client)
        self.stage = .aborted(error)
        (selfMaskShares, maskingKeyShares, maskedSum, submittedShares) = ([:], [:], [], [:])
        return error
    }

    private func error(
        _ code: SecureAggregationError.Code, _ message: String, stage: SecureAggregationStage, client: Int?
    )
        -> SecureAggregationError
    {
        SecureAggregationError(
            code: code, message: message, stage: stage, client: client,
            clientID: client.flatMap {
                parameters.participants.indices.contains($0) ? parameters.participants[$0] : nil
            })
    }
}
