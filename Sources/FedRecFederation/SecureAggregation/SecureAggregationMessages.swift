public import FedRecSecurity

// Every message has a compact binary form (`serialized()`) and a strict parser (`init(serialized:)`) that bounds
// each count before allocating, never traps on bad input, rejects trailing bytes, and throws `malformedMessage`
// naming the field. Layout: see `SecureAggregationWire`. The transport carries these bytes inside sealed
// envelopes of the matching `MessageKind` (.advertiseKeys, .shareKeys, .maskedInput, .unmask).

/// Stage 1, client -> coordinator: a client's fresh per-round public keys, signed with its long-term identity.
///
/// The signature covers `"fedrec/secagg/advertise/v1" || parameters digest || index || encryptionKey ||
/// maskingKey || selfMaskCommitment`, so the coordinator cannot swap keys, move them to another index, round or
/// cohort. The commitment lets the coordinator check the self-mask seed it reconstructs (a wrong share from a
/// responder then aborts the round instead of corrupting the sum); it reveals nothing about the 256-bit seed.
public struct AdvertisedKeys: Sendable, Hashable {
    public let round: UInt64
    public let index: Int
    /// X25519 key (c) for the pairwise AEAD keys that protect shares.
    public let encryptionKey: KeyAgreementPublicKey
    /// X25519 key (s) for the pairwise mask seeds.
    public let maskingKey: KeyAgreementPublicKey
    /// SHA-256 of `"fedrec/secagg/self-mask/v1" || parameters digest || index || b` (32 bytes).
    public let selfMaskCommitment: [UInt8]
    /// Ed25519 signature (64 bytes).
    public let signature: [UInt8]

    static let bodyByteCount = 4 + 32 + 32 + 32 + 64
    static let byteCount = 10 + bodyByteCount

    /// Throws `malformedMessage` unless `signature` is 64 bytes, the commitment 32 and `index` fits the wire.
    public init(
        round: UInt64, index: Int, encryptionKey: KeyAgreementPublicKey, maskingKey: KeyAgreementPublicKey,
        selfMaskCommitment: [UInt8], signature: [UInt8]
    ) throws {
        guard selfMaskCommitment.count == 32 else {
            throw SecureAggregationError(
                code: .malformedMessage,
                message: "advertised keys: commitment must be 32 bytes, got \(selfMaskCommitment.count)")
        }
        guard signature.count == SigningPublicKey.signatureByteCount else {
            throw SecureAggregationError(
                code: .malformedMessage, message: "advertised keys: signature must be 64 bytes, got \(signature.count)")
        }
        guard (0..<SecureAggregationParameters.maximumParticipantCount).contains(index) else {
            throw SecureAggregationError(
                code: .malformedMessage, message: "advertised keys: index \(index) out of range")
        }
        self.round = round
        self.index = index
        self.encryptionKey = encryptionKey
        self.maskingKey = maskingKey
        self.selfMaskCommitment = selfMaskCommitment
        self.signature = signature
    }

    /// The bytes the signature covers.
    static func signedBytes(
        parametersDigest: [UInt8], index: Int, encryptionKey: KeyAgreementPublicKey, maskingKey: KeyAgreementPublicKey,
        selfMaskCommitment: [UInt8]
    ) -> [UInt8] {
        var bytes = Array("fedrec/secagg/advertise/v1".utf8)
        bytes += parametersDigest
        withUnsafeBytes(of: UInt32(index).bigEndian) { bytes.append(contentsOf: $0) }
        bytes += encryptionKey.rawRepresentation
        bytes += maskingKey.rawRepresentation
        bytes += selfMaskCommitment
        return bytes
    }

    /// The commitment to self-mask seed `seed` of `index` (streamed: the seed is never copied out of
    /// `SecureBytes`).
    static func commitment(parametersDigest: [UInt8], index: Int, seed: SecureBytes) throws -> [UInt8] {
        try crypto(.advertiseKeys) {
            var hasher = try SHA256Hasher()
            try hasher.update(Array("fedrec/secagg/self-mask/v1".utf8) + parametersDigest)
            try withUnsafeBytes(of: UInt32(index).bigEndian) { try hasher.update($0) }
            try hasher.update(seed)
            return try hasher.finalize()
        }
    }

    /// Throws `invalidSignature` unless the signature verifies under `identityKey` for these parameters.
    func verify(identityKey: SigningPublicKey, parametersDigest: [UInt8]) throws {
        let message = Self.signedBytes(
            parametersDigest: parametersDigest, index: index, encryptionKey: encryptionKey, maskingKey: maskingKey,
            selfMaskCommitment: selfMaskCommitment)
        guard identityKey.isValidSignature(signature, for: message) else {
            throw SecureAggregationError(
                code: .invalidSignature,
                message: "the signature over the advertised keys does not verify against the identity key",
                stage: .advertiseKeys, client: index)
        }
    }

    /// tag | version | round | index (UInt32) | encryption key (32) | masking key (32) | commitment (32) |
    /// signature (64).
    public func serialized() -> [UInt8] {
        var writer = WireWriter(tag: .advertisedKeys, round: round, capacity: Self.byteCount)
        writeBody(into: &writer)
        return writer.bytes
    }

    fileprivate func writeBody(into writer: inout WireWriter) {
        writer.index(index)
        writer.raw(encryptionKey.rawRepresentation)
        writer.raw(maskingKey.rawRepresentation)
        writer.raw(selfMaskCommitment)
        writer.raw(signature)
    }

    public init(serialized bytes: [UInt8]) throws {
        var reader = try WireReader(bytes, expecting: .advertisedKeys)
        try self.init(round: reader.round, reading: &reader, field: "")
        try reader.finish()
    }

    fileprivate init(round: UInt64, reading reader: inout WireReader, field prefix: String) throws {
        let index = try reader.index(prefix + "index", below: SecureAggregationParameters.maximumParticipantCount)
        let encryption = try reader.raw(KeyAgreementPublicKey.byteCount, prefix + "encryptionKey")
        let masking = try reader.raw(KeyAgreementPublicKey.byteCount, prefix + "maskingKey")
        let commitment = try reader.raw(32, prefix + "selfMaskCommitment")
        let signature = try reader.raw(SigningPublicKey.signatureByteCount, prefix + "signature")
        try self.init(
            round: round, index: index, encryptionKey: KeyAgreementPublicKey(rawRepresentation: encryption),
            maskingKey: KeyAgreementPublicKey(rawRepresentation: masking), selfMaskCommitment: commitment,
            signature: signature)
    }
}

/// End of stage 1, coordinator -> clients: the advertised keys the coordinator accepted (U1), sorted by index,
/// at most one per index. Clients verify every neighbour's signature themselves.
public struct Roster: Sendable, Hashable {
    public let round: UInt64
    /// Sorted by `index`, unique.
    public let entries: [AdvertisedKeys]

    /// Sorts `entries`; throws `duplicateMessage` for a repeated index, `wrongRound` for an entry of another
    /// round.
    public init(round: UInt64, entries: [AdvertisedKeys]) throws {
        let sorted = entries.sorted { $0.index < $1.index }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where previous.index == next.index {
            throw SecureAggregationError(
                code: .duplicateMessage, message: "roster lists index \(next.index) twice", stage: .advertiseKeys,
                client: next.index)
        }
        if let stray = sorted.first(where: { $0.round != round }) {
            throw SecureAggregationError(
                code: .wrongRound, message: "roster entry of round \(stray.round) in round \(round)",
                stage: .advertiseKeys, client: stray.index)
        }
        self.round = round
        self.entries = sorted
    }

    /// The entry of `index`, if listed (binary search).
    public subscript(index: Int) -> AdvertisedKeys? {
        var (low, high) = (0, entries.count)
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].index < index { low = middle + 1 } else { high = middle }
        }
        return low < entries.count && entries[low].index == index ? entries[low] : nil
    }

    /// The indices listed.
    public var indices: [Int] { entries.map(\.index) }

    /// tag | version | round | count (UInt32) | count x (index, encryption key, masking key, commitment,
    /// signature).
    public func serialized() -> [UInt8] {
        var writer = WireWriter(tag: .roster, round: round, capacity: 14 + entries.count * AdvertisedKeys.bodyByteCount)
        writer.u32(UInt32(entries.count))
        for entry in entries { entry.writeBody(into: &writer) }
        return writer.bytes
    }

    public init(serialized bytes: [UInt8]) throws {
        var reader = try WireReader(bytes, expecting: .roster)
        let count = try reader.count(
            "count", in: 0...SecureAggregationParameters.maximumParticipantCount,
            elementSize: AdvertisedKeys.bodyByteCount)
        var entries: [AdvertisedKeys] = []
        entries.reserveCapacity(count)
        for position in 0..<count {
            let entry = try AdvertisedKeys(round: reader.round, reading: &reader, field: "entries[\(position)].")
            // One encoding per roster: strictly ascending indices, as `serialized()` writes them.
            if let previous = entries.last, previous.index >= entry.index {
                throw reader.malformed(
                    "field 'entries[\(position)].index': \(entry.index) after \(previous.index), not ascending")
            }
            entries.append(entry)
        }
        try reader.finish()
        try self.init(round: reader.round, entries: entries)
    }
}

/// Stage 2, client -> coordinator -> client: one Shamir share of the sender's self-mask seed and one of its
/// masking secret key, sealed for one neighbour (XChaCha20-Poly1305).
///
/// Key: the `crypto_kx` session key between the two parties' encryption keys, the lower index taking the
/// "client" role (sender's `transmit` = recipient's `receive`). Associated data: `"fedrec/secagg/share/v1" ||
/// parameters digest || sender || recipient`, so the coordinator cannot read, re-route (other recipient or
/// claimed sender) or replay a share into another round or cohort.
public struct EncryptedShare: Sendable, Hashable {
    /// Plaintext: self-mask seed share (32) || masking-key share (32).
    static let plaintextByteCount = 2 * MaskGenerator.seedByteCount
    static let boxByteCount = AEAD.nonceByteCount + plaintextByteCount + AEAD.tagByteCount
    static let bodyByteCount = 8 + boxByteCount

    public let round: UInt64
    public let sender: Int
    public let recipient: Int
    public let box: AEAD.SealedBox

    /// Throws `malformedMessage` unless the box holds exactly one share pair and the indices fit the wire.
    public init(round: UInt64, sender: Int, recipient: Int, box: AEAD.SealedBox) throws {
        guard box.combined.count == Self.boxByteCount else {
            throw SecureAggregationError(
                code: .malformedMessage,
                message: "encrypted share: sealed box must be \(Self.boxByteCount) bytes, got \(box.combined.count)",
                client: sender)
        }
        let range = 0..<SecureAggregationParameters.maximumParticipantCount
        guard range.contains(sender), range.contains(recipient) else {
            throw SecureAggregationError(code: .malformedMessage, message: "encrypted share: index out of range")
        }
        self.round = round
        self.sender = sender
        self.recipient = recipient
        self.box = box
    }

    static func associatedData(parametersDigest: [UInt8], sender: Int, recipient: Int) -> [UInt8] {
        var bytes = Array("fedrec/secagg/share/v1".utf8)
        bytes += parametersDigest
        withUnsafeBytes(of: UInt32(sender).bigEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(recipient).bigEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// tag | version | round | sender (UInt32) | recipient (UInt32) | sealed box (104).
    public func serialized() -> [UInt8] {
        var writer = WireWriter(tag: .encryptedShare, round: round, capacity: 10 + Self.bodyByteCount)
        writeBody(into: &writer)
        return writer.bytes
    }

    fileprivate func writeBody(into writer: inout WireWriter) {
        writer.index(sender)
        writer.index(recipient)
        writer.raw(box.combined)
    }

    public init(serialized bytes: [UInt8]) throws {
        var reader = try WireReader(bytes, expecting: .encryptedShare)
        try self.init(round: reader.round, reading: &reader, field: "")
        try reader.finish()
    }

    fileprivate init(round: UInt64, reading reader: inout WireReader, field prefix: String) throws {
        let limit = SecureAggregationParameters.maximumParticipantCount
        let sender = try reader.index(prefix + "sender", below: limit)
        let recipient = try reader.index(prefix + "recipient", below: limit)
        let box = try AEAD.SealedBox(combined: reader.raw(Self.boxByteCount, prefix + "box"))
        try self.init(round: round, sender: sender, recipient: recipient, box: box)
    }

    /// A list of shares of one round (a client's outgoing shares, or one client's inbox):
    /// tag | version | round | count (UInt16, <= 255) | count x (sender, recipient, box).
    /// Precondition: every share belongs to `round`.
    public static func serialized(_ shares: [EncryptedShare], round: UInt64) -> [UInt8] {
        precondition(shares.allSatisfy { $0.round == round }, "shares of another round")
        var writer = WireWriter(tag: .encryptedShares, round: round, capacity: 12 + shares.count * bodyByteCount)
        writer.u16(UInt16(clamping: shares.count))
        for share in shares { share.writeBody(into: &writer) }
        return writer.bytes
    }

    /// Parses `serialized(_:round:)`; at most 255 shares (a neighbourhood's size).
    public static func list(serialized bytes: [UInt8]) throws -> (round: UInt64, shares: [EncryptedShare]) {
        var reader = try WireReader(bytes, expecting: .encryptedShares)
        let count = try reader.count(
            "count", in: 0...SecretSharing.maximumShareCount, elementSize: bodyByteCount, width: 2)
        var shares: [EncryptedShare] = []
        shares.reserveCapacity(count)
        for position in 0..<count {
            shares.append(try EncryptedShare(round: reader.round, reading: &reader, field: "shares[\(position)]."))
        }
        try reader.finish()
        return (reader.round, shares)
    }
}

/// Stage 3, client -> coordinator: the client's encoded input plus its self mask and pairwise masks, mod 2^32,
/// and the neighbours whose encrypted shares failed to open (reported; the coordinator logs them).
public struct MaskedInput: Sendable, Hashable {
    public let round: UInt64
    public let index: Int
    /// L + 1 words (the encoded vector and the weight word), masked.
    public let words: [UInt32]
    /// Neighbours whose share to this client did not authenticate; this client holds no share of theirs.
    public let rejectedSenders: [Int]

    public init(round: UInt64, index: Int, words: [UInt32], rejectedSenders: [Int] = []) throws {
        let limit = SecureAggregationParameters.maximumParticipantCount
        guard (0..<limit).contains(index), rejectedSenders.allSatisfy({ (0..<limit).contains($0) }) else {
            throw SecureAggregationError(code: .malformedMessage, message: "masked input: index out of range")
        }
        guard (2...(SecureAggregationParameters.maximumVectorLength + 1)).contains(words.count) else {
            throw SecureAggregationError(
                code: .malformedMessage, message: "masked input: \(words.count) words is out of range", client: index)
        }
        guard rejectedSenders.count <= SecretSharing.maximumShareCount else {
            throw SecureAggregationError(
                code: .malformedMessage, message: "masked input: more than 255 rejected senders", client: index)
        }
        self.round = round
        self.index = index
        self.words = words
        self.rejectedSenders = rejectedSenders
    }

    /// tag | version | round | index (UInt32) | rejected count (UInt16, <= 255) | rejected (UInt32 each) |
    /// word count (UInt32, 2...L_max + 1) | words (little-endian UInt32).
    public func serialized() -> [UInt8] {
        var writer = WireWriter(
            tag: .maskedInput, round: round, capacity: 20 + 4 * rejectedSenders.count + 4 * words.count)
        writer.index(index)
        writer.u16(UInt16(rejectedSenders.count))
        for sender in rejectedSenders { writer.index(sender) }
        writer.u32(UInt32(words.count))
        writer.wordsLittleEndian(words)
        return writer.bytes
    }

    public init(serialized bytes: [UInt8]) throws {
        let limit = SecureAggregationParameters.maximumParticipantCount
        var reader = try WireReader(bytes, expecting: .maskedInput)
        let index = try reader.index("index", below: limit)
        let rejectedCount = try reader.count(
            "rejectedCount", in: 0...SecretSharing.maximumShareCount, elementSize: 4, width: 2)
        var rejected: [Int] = []
        for position in 0..<rejectedCount { rejected.append(try reader.index("rejected[\(position)]", below: limit)) }
        let count = try reader.count(
            "wordCount", in: 2...(SecureAggregationParameters.maximumVectorLength + 1), elementSize: 4)
        let words = try reader.wordsLittleEndian(count, "words")
        try reader.finish()
        try self.init(round: reader.round, index: index, words: words, rejectedSenders: rejected)
    }
}

/// End of stage 3, coordinator -> surviving clients: whose self-mask seeds to reveal (the survivors, whose
/// masked inputs are in the sum) and whose masking keys to reveal (clients that shared keys but sent no masked
/// input, and whose pairwise masks therefore remain in the sum). A client refuses a request naming anyone in
/// both lists.
public struct UnmaskRequest: Sendable, Hashable {
    public let round: UInt64
    /// U3: clients whose masked input was summed; ascending.
    public let survivors: [Int]
    /// Clients in U2 \ U3 with at least one surviving neighbour; ascending.
    public let dropped: [Int]

    public init(round: UInt64, survivors: [Int], dropped: [Int]) throws {
        let limit = SecureAggregationParameters.maximumParticipantCount
        guard (survivors + dropped).allSatisfy({ (0..<limit).contains($0) }),
            survivors.count <= limit, dropped.count <= limit
        else {
            throw SecureAggregationError(code: .malformedMessage, message: "unmask request: index out of range")
        }
        self.round = round
        self.survivors = survivors
        self.dropped = dropped
    }

    /// tag | version | round | survivor count (UInt32) | survivors (UInt32 each) | dropped count | dropped.
    public func serialized() -> [UInt8] {
        var writer = WireWriter(tag: .unmaskRequest, round: round, capacity: 18 + 4 * (survivors.count + dropped.count))
        writer.u32(UInt32(survivors.count))
        for index in survivors { writer.index(index) }
        writer.u32(UInt32(dropped.count))
        for index in dropped { writer.index(index) }
        return writer.bytes
    }

    public init(serialized bytes: [UInt8]) throws {
        let limit = SecureAggregationParameters.maximumParticipantCount
        var reader = try WireReader(bytes, expecting: .unmaskRequest)
        var lists: [[Int]] = []
        for name in ["survivors", "dropped"] {
            let count = try reader.count(name + "Count", in: 0...limit, elementSize: 4)
            var list: [Int] = []
            list.reserveCapacity(count)
            for position in 0..<count { list.append(try reader.index("\(name)[\(position)]", below: limit)) }
            lists.append(list)
        }
        try reader.finish()
        try self.init(round: reader.round, survivors: lists[0], dropped: lists[1])
    }
}

/// Stage 4, client -> coordinator: the shares this client holds of the requested secrets (self-mask seed
/// shares of survivors, masking-key shares of dropped clients), keyed by owner index.
///
/// The share number is not sent: it is the responder's position in the owner's neighbourhood
/// (`NeighbourGraph.shareNumber`). These bytes are what the coordinator is entitled to learn; they still
/// travel inside a sealed envelope.
public struct UnmaskResponse: Sendable, Equatable {
    public let round: UInt64
    public let index: Int
    public let selfMaskShares: [Int: SecureBytes]
    public let pairwiseMaskShares: [Int: SecureBytes]

    static let shareByteCount = MaskGenerator.seedByteCount

    public init(
        round: UInt64, index: Int, selfMaskShares: [Int: SecureBytes], pairwiseMaskShares: [Int: SecureBytes]
    ) throws {
        let limit = SecureAggregationParameters.maximumParticipantCount
        guard (0..<limit).contains(index),
            (Array(selfMaskShares.keys) + Array(pairwiseMaskShares.keys)).allSatisfy({ (0..<limit).contains($0) })
        else {
            throw SecureAggregationError(code: .malformedMessage, message: "unmask response: index out of range")
        }
        guard selfMaskShares.count + pairwiseMaskShares.count <= 2 * SecretSharing.maximumShareCount else {
            throw SecureAggregationError(
                code: .malformedMessage, message: "unmask response: too many shares", client: index)
        }
        guard
            (Array(selfMaskShares.values) + Array(pairwiseMaskShares.values)).allSatisfy({
                $0.count == Self.shareByteCount
            })
        else {
            throw SecureAggregationError(
                code: .malformedMessage, message: "unmask response: every share must be 32 bytes", client: index)
        }
        self.round = round
        self.index = index
        self.selfMaskShares = selfMaskShares
        self.pairwiseMaskShares = pairwiseMaskShares
    }

    /// tag | version | round | index (UInt32) | count (UInt16, <= 510) | count x (kind UInt8: 1 self-mask seed,
    /// 2 masking key | owner UInt32 | share 32 bytes), self-mask shares first, owners ascending.
    public func serialized() -> [UInt8] {
        let count = selfMaskShares.count + pairwiseMaskShares.count
        var writer = WireWriter(tag: .unmaskResponse, round: round, capacity: 16 + count * 37)
        writer.index(index)
        writer.u16(UInt16(count))
        for (kind, shares) in [(UInt8(1), selfMaskShares), (UInt8(2), pairwiseMaskShares)] {
            for owner in shares.keys.sorted() {
                writer.u8(kind)
                writer.index(owner)
                shares[owner]!.withUnsafeBytes { writer.raw($0) }
            }
        }
        return writer.bytes
    }

    /// `serialized()` in zeroing memory: the plain copy (sized exactly, so never regrown) is wiped before it is
    /// freed. The shares are other clients' secrets, which the coordinator alone is meant to learn.
    public func serializedSecret() -> SecureBytes {
        var bytes = serialized()
        defer { bytes.wipe() }
        return SecureBytes(copying: bytes)
    }

    /// Parses a response. The caller wipes `bytes` afterwards (`Array.wipe`); the shares are copied straight into
    /// `SecureBytes`, no other copy is made.
    public init(serialized bytes: [UInt8]) throws {
        let limit = SecureAggregationParameters.maximumParticipantCount
        var reader = try WireReader(bytes, expecting: .unmaskResponse)
        let index = try reader.index("index", below: limit)
        let count = try reader.count(
            "count", in: 0...(2 * SecretSharing.maximumShareCount), elementSize: 5 + Self.shareByteCount, width: 2)
        var selfMask: [Int: SecureBytes] = [:]
        var pairwise: [Int: SecureBytes] = [:]
        var previous: (kind: UInt8, owner: Int)? = nil
        for position in 0..<count {
            let kind = try reader.u8("shares[\(position)].kind")
            let owner = try reader.index("shares[\(position)].owner", below: limit)
            // One encoding per response, as `serialized()` writes it: self-mask shares first, owners ascending
            // (so no owner repeats within a kind).
            if let previous, (previous.kind, previous.owner) >= (kind, owner) {
                throw reader.malformed(
                    "field 'shares[\(position)]': kind \(kind) owner \(owner) after kind \(previous.kind) owner "
                        + "\(previous.owner), not in order")
            }
            previous = (kind, owner)
            let share = try reader.secret(Self.shareByteCount, "shares[\(position)].share")
            switch kind {
            case 1: selfMask[owner] = share
            case 2: pairwise[owner] = share
            default:
                throw reader.malformed("field 'shares[\(position)].kind': \(kind) is not 1 or 2")
            }
        }
        try reader.finish()
        try self.init(round: reader.round, index: index, selfMaskShares: selfMask, pairwiseMaskShares: pairwise)
    }
}

/// The result of a completed round.
public struct SecureAggregate: Sendable, Equatable {
    /// Σ_j min(w_j, W) * clamp(x_j, -c, c) over the survivors, dequantised (see `SecureAggregationQuantizer`
    /// for the error bound).
    public let weightedSum: [Float]
    /// Σ_j min(w_j, W) over the survivors, dequantised.
    public let totalWeight: Double
    /// The exact wrapping sum of the survivors' encoded words (L + 1): what the masks hid.
    public let encodedSum: [UInt32]
    /// Clients whose input is in the sum, ascending.
    public let survivors: [Int]
    /// Clients that went silent, with the first stage whose message did not arrive. A survivor that sent no
    /// unmask response is listed with `.unmask`; its input is still in the sum.
    public let dropped: [Int: SecureAggregationStage]
    /// Clients the coordinator excluded (bad signature, bad shares, too few neighbours), with the reason.
    public let excluded: [Int: SecureAggregationError]
    /// The message rejections and reports of the round, in order (for the log): the most recent ones, and how
    /// many in all.
    public let rejections: BoundedLog<SecureAggregationError>

    /// Whether `totalWeight` could come from the survivors' quantised weights: each lies in [0, W] up to one
    /// quantisation level. A total outside means masks that did not cancel (an input masked with another set
    /// than the one assumed: then the weight word is about uniform over ±n W, so most such sums are caught); a
    /// coordinator must not apply that sum. Only meaningful for inputs encoded by the quantiser.
    public func hasPlausibleWeight(under parameters: SecureAggregationParameters) -> Bool {
        let survivors = Double(self.survivors.count)
        let level = parameters.quantizer.weightResolution
        return totalWeight >= -survivors * level
            && totalWeight <= survivors * (Double(parameters.maximumWeight) + level)
    }

    /// The weighted mean (FedAvg): `weightedSum / totalWeight`.
    public var mean: [Float] {
        let scale = totalWeight > 0 ? 1 / totalWeight : 0
        return weightedSum.map { Float(Double($0) * scale) }
    }
}
