public import FedRecSecurity

/// One client's side of a SecAgg+ round (Bell et al. 2020 over Bonawitz et al. 2017): a pure state machine,
/// no I/O. Call the four stage methods in order, feeding each what the coordinator relayed; each returns the
/// message to send.
///
/// Masking (i = this client, M(i) = neighbours whose shares the coordinator relayed, s_ij the pairwise seed):
/// y_i = encode(x_i, w_i) + PRG(b_i) + Σ_{j ∈ M(i), j < i} PRG(s_ij) − Σ_{j ∈ M(i), j > i} PRG(s_ij)  (mod 2^32),
/// so every pair's masks cancel in the sum and b_i is removed once the coordinator reconstructs it.
///
/// Secrets (the two X25519 secret keys, b_i, pairwise seeds, shares held for neighbours) live in `SecureBytes`
/// and are dropped as soon as they are no longer needed: the keys and seeds after the masked input, the held
/// shares after the unmask response. A client answers at most one unmask request, and never reveals both the
/// self-mask share and the masking-key share of one peer.
public struct SecureAggregationClient: Sendable {
    private enum Stage: Sendable, Equatable {
        case created, advertised, sharedKeys, sentMaskedInput, finished
    }

    public let parameters: SecureAggregationParameters
    public let index: Int
    /// This client's neighbours (ascending).
    public let neighbours: [Int]
    private let identity: SigningIdentity
    private let identityKeys: [SigningPublicKey]
    private let graph: NeighbourGraph
    private let digest: [UInt8]
    private var stage = Stage.created

    private var encryptionKey: KeyAgreementKey?
    private var maskingKey: KeyAgreementKey?
    private var selfMaskSeed: SecureBytes?
    private var advertised: AdvertisedKeys?
    /// Neighbours whose advertised keys verified, with the AEAD key for receiving from them and the pairwise
    /// mask seed.
    private var peers: [Int: (receiveKey: SymmetricKey, maskSeed: SecureBytes)] = [:]
    /// Indices the stage-2 roster listed (U1); every client an unmask request names must be one of them.
    private var rosterMembers: Set<Int> = []
    /// Shares held for neighbours: (self-mask seed share, masking-key share).
    private var heldShares: [Int: (selfMask: SecureBytes, pairwise: SecureBytes)] = [:]

    /// Every peer this client rejected (bad signature, bad key, tampered share), for the log.
    public private(set) var rejections: [SecureAggregationError] = []

    /// What every participant of a round derives from the parameters alone: checked once, then shared
    /// (copy-on-write) by all the participants one process hosts, so each does not hold a graph of its own.
    public struct RoundContext: Sendable {
        public let parameters: SecureAggregationParameters
        let graph: NeighbourGraph
        let digest: [UInt8]

        /// Throws `invalidParameters` for bad parameters.
        public init(parameters: SecureAggregationParameters) throws {
            try parameters.validate()
            self.parameters = parameters
            graph = parameters.graph
            digest = try parameters.digest()
        }
    }

    /// Throws `invalidParameters` for bad parameters, an index out of range, a key list of the wrong length, or
    /// an identity that is not `identityKeys[index]`.
    public init(
        parameters: SecureAggregationParameters, index: Int, identity: SigningIdentity,
        identityKeys: [SigningPublicKey]
    ) throws {
        try self.init(
            context: RoundContext(parameters: parameters), index: index, identity: identity, identityKeys: identityKeys)
    }

    /// As `init(parameters:index:identity:identityKeys:)` with the round's shared context.
    public init(
        context: RoundContext, index: Int, identity: SigningIdentity, identityKeys: [SigningPublicKey]
    ) throws {
        let parameters = context.parameters
        let n = parameters.participants.count
        guard (0..<n).contains(index) else {
            throw SecureAggregationError(code: .invalidParameters, message: "index \(index) is not in 0..<\(n)")
        }
        guard identityKeys.count == n else {
            throw SecureAggregationError(
                code: .invalidParameters, message: "\(identityKeys.count) identity keys for \(n) participants")
        }
        guard identityKeys[index] == identity.publicKey else {
            throw SecureAggregationError(
                code: .invalidParameters, message: "identity is not the listed identity of index \(index)",
                client: index, clientID: parameters.participants[index])
        }
        self.parameters = parameters
        self.index = index
        self.identity = identity
        self.identityKeys = identityKeys
        self.graph = context.graph
        self.neighbours = graph.neighbours(of: index)
        self.digest = context.digest
    }

    // MARK: Stage 1

    /// Makes fresh X25519 key pairs (c for shares, s for masks) and the self-mask seed b, and signs the public
    /// keys with a commitment to b.
    public mutating func advertiseKeys() throws -> AdvertisedKeys {
        try expect(.created, .advertiseKeys)
        let keys = try crypto(.advertiseKeys) {
            let encryption = try KeyAgreementKey()
            let masking = try KeyAgreementKey()
            let seed = try SecureBytes(randomCount: MaskGenerator.seedByteCount)
            let commitment = try AdvertisedKeys.commitment(parametersDigest: digest, index: index, seed: seed)
            let signed = AdvertisedKeys.signedBytes(
                parametersDigest: digest, index: index, encryptionKey: encryption.publicKey,
                maskingKey: masking.publicKey, selfMaskCommitment: commitment)
            return (encryption, masking, seed, try identity.signature(for: signed), commitment)
        }
        let message = try AdvertisedKeys(
            round: parameters.round, index: index, encryptionKey: keys.0.publicKey, maskingKey: keys.1.publicKey,
            selfMaskCommitment: keys.4, signature: keys.3)
        (encryptionKey, maskingKey, selfMaskSeed, advertised) = (keys.0, keys.1, keys.2, message)
        stage = .advertised
        return message
    }

    // MARK: Stage 2

    /// Verifies the neighbours' advertised keys in `roster` (a bad signature or key excludes that neighbour and
    /// is recorded in `rejections`), Shamir-shares b and the masking secret key t-of-(verified neighbours), and
    /// seals one share pair per verified neighbour.
    ///
    /// Throws `wrongRound`, `invalidKey` when the roster does not carry this client's own keys as advertised,
    /// and `tooFewNeighbours` when fewer than t neighbours verified (the client cannot take part).
    public mutating func shareKeys(roster: Roster) throws -> [EncryptedShare] {
        try expect(.advertised, .shareKeys)
        try checkRound(roster.round, .shareKeys)
        guard let advertised, let encryptionKey, let maskingKey, let selfMaskSeed else {
            throw stageError(.shareKeys)
        }
        guard let own = roster[index] else {
            // Late at stage 1, or pruned with too few neighbours: not an attack, and not reported as one.
            stage = .finished
            throw SecureAggregationError(
                code: .tooFewNeighbours,
                message: "this client is not in the roster (its keys came late, or too few of its neighbours did)",
                stage: .shareKeys, client: index, clientID: parameters.participants[index])
        }
        guard own == advertised else {
            throw SecureAggregationError(
                code: .invalidKey, message: "the roster does not carry this client's keys as advertised",
                stage: .shareKeys, client: index, clientID: parameters.participants[index])
        }
        rosterMembers = Set(roster.entries.map(\.index))
        var transmitKeys: [(Int, SymmetricKey)] = []
        for neighbour in neighbours {
            guard let entry = roster[neighbour] else { continue }  // dropped before stage 2
            do {
                try entry.verify(identityKey: identityKeys[neighbour], parametersDigest: digest)
                guard entry.encryptionKey != advertised.encryptionKey, entry.maskingKey != advertised.maskingKey else {
                    throw SecureAggregationError(
                        code: .invalidKey, message: "advertised keys reflect this client's own keys")
                }
                let lower = index < neighbour
                let session = try crypto(.shareKeys) {
                    lower
                        ? try encryptionKey.clientSessionKeys(serverPublicKey: entry.encryptionKey)
                        : try encryptionKey.serverSessionKeys(clientPublicKey: entry.encryptionKey)
                }
                let seed = try crypto(.shareKeys) { try pairwiseSeed(maskingKey, peer: entry.maskingKey, lower: lower) }
                peers[neighbour] = (session.receive, seed)
                transmitKeys.append((neighbour, session.transmit))
            } catch var error as SecureAggregationError {
                (error.stage, error.client) = (.shareKeys, neighbour)
                error.clientID = parameters.participants[neighbour]
                rejections.append(error)
            }
        }
        guard transmitKeys.count >= parameters.threshold else {
            stage = .finished
            throw SecureAggregationError(
                code: .tooFewNeighbours,
                message: "only \(transmitKeys.count) neighbour(s) verified; threshold is \(parameters.threshold)",
                stage: .shareKeys, client: index, clientID: parameters.participants[index])
        }
        let numbers = transmitKeys.map { graph.shareNumber(holder: $0.0, owner: index)! }
        let threshold = parameters.threshold
        let selfMaskShares = try crypto(.shareKeys) {
            try SecretSharing.split(selfMaskSeed, threshold: threshold, shareNumbers: numbers)
        }
        let keyShares = try crypto(.shareKeys) {
            try SecretSharing.split(secretKeyOf: maskingKey, threshold: threshold, shareNumbers: numbers)
        }
        var sealed: [EncryptedShare] = []
        sealed.reserveCapacity(transmitKeys.count)
        for (position, (neighbour, key)) in transmitKeys.enumerated() {
            var plaintext = SecureBytes(zeros: EncryptedShare.plaintextByteCount)
            plaintext.withUnsafeMutableBytes { out in
                selfMaskShares[position].value.withUnsafeBytes { out.copyMemory(from: $0) }
                keyShares[position].value.withUnsafeBytes {
                    UnsafeMutableRawBufferPointer(rebasing: out[MaskGenerator.seedByteCount...]).copyMemory(from: $0)
                }
            }
            let associatedData = EncryptedShare.associatedData(
                parametersDigest: digest, sender: index, recipient: neighbour)
            let box = try crypto(.shareKeys) { try AEAD.seal(plaintext, using: key, authenticating: associatedData) }
            sealed.append(try EncryptedShare(round: parameters.round, sender: index, recipient: neighbour, box: box))
        }
        self.encryptionKey = nil
        stage = .sharedKeys
        return sealed
    }

    // MARK: Stage 3

    /// Encodes `values` with weight `weight` (`SecureAggregationQuantizer`: clip to [-c, c], cap the weight at W,
    /// stochastic rounding) and masks it (see `maskedInput(encoded:shares:)`).
    public mutating func maskedInput(_ values: [Float], weight: Float, shares: [EncryptedShare]) throws
        -> MaskedInput
    {
        try expect(.sharedKeys, .maskedInput)
        guard values.count == parameters.vectorLength else {
            throw SecureAggregationError(
                code: .invalidInput,
                message: "\(values.count) values; the round aggregates \(parameters.vectorLength)",
                stage: .maskedInput, client: index)
        }
        let encoded = try parameters.quantizer.encode(values, weight: weight)
        return try maskedInput(encoded: encoded, shares: shares)
    }

    /// Opens the shares the coordinator relayed to this client (`shares`: its inbox), keeps them for the unmask
    /// stage, and returns `encoded` (L + 1 words, already quantised) plus masks.
    ///
    /// Shares from non-neighbours, of another round, to another recipient, or repeated are ignored and recorded.
    /// A share that fails to authenticate is recorded and reported in `MaskedInput.rejectedSenders`; its
    /// sender's pairwise mask is still applied, because the coordinator relayed its shares (it is in U2). Fewer
    /// than t authenticated shares throw `tooFewNeighbours` and end this client's part in the attempt (no input).
    public mutating func maskedInput(encoded: [UInt32], shares: [EncryptedShare]) throws -> MaskedInput {
        try expect(.sharedKeys, .maskedInput)
        guard encoded.count == parameters.vectorLength + 1 else {
            throw SecureAggregationError(
                code: .invalidInput,
                message: "\(encoded.count) encoded words; the round needs \(parameters.vectorLength + 1)",
                stage: .maskedInput, client: index)
        }
        guard let selfMaskSeed else { throw stageError(.maskedInput) }
        var masked = Set<Int>()
        var rejected: [Int] = []
        for share in shares {
            func reject(_ code: SecureAggregationError.Code, _ message: String) {
                rejections.append(
                    SecureAggregationError(
                        code: code, message: message, stage: .shareKeys, client: share.sender,
                        clientID: parameters.participants.indices.contains(share.sender)
                            ? parameters.participants[share.sender] : nil))
            }
            guard share.round == parameters.round else {
                reject(.wrongRound, "share of round \(share.round) in round \(parameters.round)")
                continue
            }
            guard share.recipient == index else {
                reject(.invalidShares, "share addressed to client \(share.recipient), not to this client")
                continue
            }
            guard let peer = peers[share.sender] else {
                reject(.unknownSender, "share from a client that is not a verified neighbour")
                continue
            }
            guard masked.insert(share.sender).inserted else {
                reject(.duplicateMessage, "second share from the same sender ignored")
                continue
            }
            let associatedData = EncryptedShare.associatedData(
                parametersDigest: digest, sender: share.sender, recipient: index)
            guard
                let plaintext = try? AEAD.openSecret(share.box, using: peer.receiveKey, authenticating: associatedData),
                plaintext.count == EncryptedShare.plaintextByteCount
            else {
                reject(.tamperedShare, "encrypted share failed to authenticate; sender's shares are not held")
                rejected.append(share.sender)
                continue
            }
            let half = MaskGenerator.seedByteCount
            let selfMask = plaintext.withUnsafeBytes { SecureBytes(copying: $0[..<half]) }
            let pairwise = plaintext.withUnsafeBytes { SecureBytes(copying: $0[half...]) }
            heldShares[share.sender] = (selfMask, pairwise)
        }
        // Bonawitz et al.'s round 2 aborts below t: with fewer authenticated shares (a stale or withheld inbox),
        // the masked input would carry too few pairwise masks, down to the self-mask alone, which the coordinator
        // removes for every survivor, reading this client's input.
        guard heldShares.count >= parameters.threshold else {
            let count = heldShares.count
            (self.maskingKey, self.selfMaskSeed, self.peers, self.heldShares) = (nil, nil, [:], [:])
            stage = .finished
            throw SecureAggregationError(
                code: .tooFewNeighbours,
                message: "only \(count) neighbour share(s) authenticated, the threshold is \(parameters.threshold): "
                    + "no masked input is sent", stage: .maskedInput, client: index,
                clientID: parameters.participants[index])
        }
        var terms = [try crypto(.maskedInput) { try MaskTerm(seed: selfMaskSeed, negated: false) }]
        for neighbour in masked.sorted() {
            let seed = peers[neighbour]!.maskSeed
            terms.append(try crypto(.maskedInput) { try MaskTerm(seed: seed, negated: neighbour > index) })
        }
        var words = encoded
        try crypto(.maskedInput) { try MaskGenerator.accumulate(terms, into: &words) }
        let message = try MaskedInput(
            round: parameters.round, index: index, words: words, rejectedSenders: rejected.sorted())
        (self.maskingKey, self.selfMaskSeed, self.peers) = (nil, nil, [:])
        stage = .sentMaskedInput
        return message
    }

    // MARK: Stage 4

    /// Answers the coordinator's unmask request with the shares this client holds: self-mask seed shares of
    /// `request.survivors`, masking-key shares of `request.dropped`.
    ///
    /// Throws `refusedRequest` (and answers nothing) when the request names a client in both lists, names a
    /// client twice, names one the round's roster did not list (so made-up indices cannot pad the survivors),
    /// does not list this client among the survivors, or lists fewer survivors than t.
    public mutating func unmask(_ request: UnmaskRequest) throws -> UnmaskResponse {
        try expect(.sentMaskedInput, .unmask)
        try checkRound(request.round, .unmask)
        func refuse(_ message: String, peer: Int? = nil) -> SecureAggregationError {
            stage = .finished
            heldShares = [:]
            return SecureAggregationError(
                code: .refusedRequest, message: message, stage: .unmask, client: peer,
                clientID: peer.flatMap {
                    parameters.participants.indices.contains($0) ? parameters.participants[$0] : nil
                })
        }
        let survivors = Set(request.survivors)
        let dropped = Set(request.dropped)
        guard survivors.count == request.survivors.count, dropped.count == request.dropped.count else {
            throw refuse("the request names a client twice in one list")
        }
        if let both = survivors.intersection(dropped).min() {
            throw refuse(
                "the request asks for both the self-mask seed and the masking key of client \(both)", peer: both)
        }
        if let stranger = survivors.union(dropped).subtracting(rosterMembers).min() {
            throw refuse("the request names client \(stranger), which the round's roster did not list", peer: stranger)
        }
        guard survivors.contains(index) else {
            throw refuse("the request does not list this client among the survivors", peer: index)
        }
        guard survivors.count >= parameters.minimumSurvivorCount else {
            throw refuse(
                "only \(survivors.count) survivor(s); the round needs at least \(parameters.minimumSurvivorCount)")
        }
        var selfMask: [Int: SecureBytes] = [:]
        var pairwise: [Int: SecureBytes] = [:]
        for (owner, shares) in heldShares {
            if survivors.contains(owner) {
                selfMask[owner] = shares.selfMask
            } else if dropped.contains(owner) {
                pairwise[owner] = shares.pairwise
            }
        }
        heldShares = [:]
        stage = .finished
        return try UnmaskResponse(
            round: parameters.round, index: index, selfMaskShares: selfMask, pairwiseMaskShares: pairwise)
    }

    // MARK: Helpers

    private func expect(_ expected: Stage, _ stage: SecureAggregationStage) throws {
        guard self.stage == expected else { throw stageError(stage) }
    }

    private func stageError(_ stage: SecureAggregationStage) -> SecureAggregationError {
        SecureAggregationError(
            code: .wrongStage, message: "'\(stage)' called out of order (client is at \(self.stage))", stage: stage,
            client: index)
    }

    private func checkRound(_ round: UInt64, _ stage: SecureAggregationStage) throws {
        guard round == parameters.round else {
            throw SecureAggregationError(
                code: .wrongRound, message: "message of round \(round) in round \(parameters.round)", stage: stage)
        }
    }
}

/// Runs `body`, turning a `SecurityError` into `cryptographicFailure` (or `invalidKey` for a rejected public key).
func crypto<T>(_ stage: SecureAggregationStage, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as SecurityError {
        throw SecureAggregationError(
            code: error.code == .invalidPublicKey ? .invalidKey : .cryptographicFailure, message: error.description,
            stage: stage)
    }
}

/// The pairwise mask seed of two clients from one's masking key and the other's public masking key: the
/// `crypto_kx` session key that the lower index transmits with (= the higher index's receive key).
func pairwiseSeed(_ key: KeyAgreementKey, peer: KeyAgreementPublicKey, lower: Bool) throws -> SecureBytes {
    let session =
        lower ? try key.clientSessionKeys(serverPublicKey: peer) : try key.serverSessionKeys(clientPublicKey: peer)
    return (lower ? session.transmit : session.receive).withUnsafeBytes { SecureBytes(copying: $0) }
}
