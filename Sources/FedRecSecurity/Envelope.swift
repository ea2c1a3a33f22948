/// What a sealed message carries; part of the associated data, so a message of one kind cannot be passed
/// off as another. Raw values are wire values: never reuse one.
public struct MessageKind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Retired (wire protocol before the shared round model): the global model sealed for one client.
    public static let roundAssignment = MessageKind(rawValue: 1)
    /// Client -> coordinator: a model update (user-tower delta, item-embedding gradient, example count).
    public static let modelUpdate = MessageKind(rawValue: 2)
    /// Client -> coordinator: enrolment / hello.
    public static let enrolment = MessageKind(rawValue: 3)
    /// Coordinator -> every process of a round's cohort: the global user tower and item-embedding matrix,
    /// sealed once under the round's fresh random key.
    public static let roundModel = MessageKind(rawValue: 4)
    /// Coordinator -> one client: the round key, sealed under that client's session key.
    public static let roundKey = MessageKind(rawValue: 5)
    /// Secure aggregation stages (reserved for the SecAgg+ issue).
    public static let advertiseKeys = MessageKind(rawValue: 16)
    public static let shareKeys = MessageKind(rawValue: 17)
    public static let maskedInput = MessageKind(rawValue: 18)
    public static let unmask = MessageKind(rawValue: 19)

    public var description: String {
        switch rawValue {
        case 1: "roundAssignment"
        case 2: "modelUpdate"
        case 3: "enrolment"
        case 4: "roundModel"
        case 5: "roundKey"
        case 16: "advertiseKeys"
        case 17: "shareKeys"
        case 18: "maskedInput"
        case 19: "unmask"
        default: "kind(\(rawValue))"
        }
    }
}

/// The clear header of an envelope, which is also the AEAD associated data.
///
/// Layout (big-endian, `24 + L` bytes): `"fdrc"` magic (4) | protocol version (UInt16) | message kind (UInt8) |
/// client-id length L (UInt8, 1...255) | round (UInt64) | sender sequence number (UInt64) | client id (L bytes
/// UTF-8). Every field is authenticated: changing any byte makes the box fail to open.
public struct EnvelopeHeader: Sendable, Hashable {
    /// The protocol version this build seals and accepts.
    public static let currentVersion: UInt16 = 1
    static let magic: [UInt8] = Array("fdrc".utf8)
    static let fixedByteCount = 24

    public var version: UInt16
    public var kind: MessageKind
    public var round: UInt64
    /// Per-sender, per-session counter; see `ReplayGuard`.
    public var sequence: UInt64
    /// The client the session belongs to (sender of client messages, recipient of coordinator messages).
    public var clientID: String

    public init(
        version: UInt16 = Self.currentVersion, kind: MessageKind, round: UInt64, sequence: UInt64, clientID: String
    ) {
        self.version = version
        self.kind = kind
        self.round = round
        self.sequence = sequence
        self.clientID = clientID
    }

    /// The encoded header (the associated data).
    public func encoded() throws -> [UInt8] {
        let id = Array(clientID.utf8)
        guard (1...255).contains(id.count) else {
            throw SecurityError(code: .invalidLength, message: "client id must be 1...255 UTF-8 bytes, got \(id.count)")
        }
        var bytes = Self.magic
        bytes.reserveCapacity(Self.fixedByteCount + id.count)
        bytes.append(UInt8(version >> 8))
        bytes.append(UInt8(version & 0xff))
        bytes.append(kind.rawValue)
        bytes.append(UInt8(id.count))
        for value in [round, sequence] {
            for shift in stride(from: 56, through: 0, by: -8) {
                bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
            }
        }
        bytes += id
        return bytes
    }

    /// Parses a header at the start of `bytes`; returns it with its encoded length.
    static func decode(_ bytes: ArraySlice<UInt8>) throws -> (EnvelopeHeader, Int) {
        func malformed(_ why: String) -> SecurityError {
            SecurityError(code: .malformedMessage, message: "envelope header: \(why)")
        }
        guard bytes.count >= fixedByteCount else {
            throw malformed("\(bytes.count) bytes, need at least \(fixedByteCount)")
        }
        let b = bytes.startIndex
        guard Array(bytes[b..<(b + 4)]) == magic else { throw malformed("bad magic") }
        let version = UInt16(bytes[b + 4]) << 8 | UInt16(bytes[b + 5])
        let kind = MessageKind(rawValue: bytes[b + 6])
        let idLength = Int(bytes[b + 7])
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(bytes[b + at + $1]) } }
        let round = u64(8)
        let sequence = u64(16)
        guard idLength > 0 else { throw malformed("empty client id") }
        guard bytes.count >= fixedByteCount + idLength else { throw malformed("truncated client id") }
        guard let id = String(validating: bytes[(b + 24)..<(b + 24 + idLength)], as: UTF8.self) else {
            throw malformed("client id is not UTF-8")
        }
        return (
            EnvelopeHeader(version: version, kind: kind, round: round, sequence: sequence, clientID: id),
            fixedByteCount + idLength
        )
    }
}

/// A sealed message on the wire: `header || nonce || ciphertext || tag`, the header authenticated as associated data.
/// It keeps the wire form itself: sealing writes it in one pass and opening decrypts straight out of it, so a
/// model-sized payload is not copied on the way.
public struct Envelope: Sendable, Hashable {
    /// The header as sent; authentic only after `open` succeeds.
    public let header: EnvelopeHeader
    /// The wire bytes.
    public let serialized: [UInt8]
    /// Length of the encoded header at the start of `serialized`.
    private let headerLength: Int

    /// Seals `payload` under `key` with `header` as associated data (and a fresh random nonce).
    public static func seal<Payload: ContiguousBytes>(
        _ payload: Payload, header: EnvelopeHeader, using key: SymmetricKey
    )
        throws -> Envelope
    {
        let ad = try header.encoded()
        let bytes = try payload.withUnsafeBytes { message in
            let total = ad.count + AEAD.nonceByteCount + message.count + AEAD.tagByteCount
            return try [UInt8](unsafeUninitializedCapacity: total) { out, count in
                let raw = UnsafeMutableRawBufferPointer(out)
                raw.copyBytes(from: ad)
                let nonce = UnsafeMutableRawBufferPointer(rebasing: raw[ad.count..<(ad.count + AEAD.nonceByteCount)])
                try AEAD.fillRandomNonce(nonce)
                try ad.withUnsafeBytes { associated in
                    try AEAD.encrypt(
                        message, nonce: UnsafeRawBufferPointer(nonce), using: key,
                        authenticating: associated,
                        into: UnsafeMutableRawBufferPointer(rebasing: raw[(ad.count + AEAD.nonceByteCount)...]))
                }
                count = total
            }
        }
        return Envelope(header: header, serialized: bytes, headerLength: ad.count)
    }

    private init(header: EnvelopeHeader, serialized: [UInt8], headerLength: Int) {
        self.header = header
        self.serialized = serialized
        self.headerLength = headerLength
    }

    /// Parses wire bytes without authenticating them (the receiver reads `header.clientID` to find the session
    /// key, then calls `open`). Throws `malformedMessage`. An `[UInt8]` is kept as is, not copied.
    public init<Bytes: Collection>(serialized bytes: Bytes) throws where Bytes.Element == UInt8 {
        let all = Array(bytes)
        let (header, length) = try EnvelopeHeader.decode(all[...])
        guard all.count - length >= AEAD.nonceByteCount + AEAD.tagByteCount else {
            throw SecurityError(
                code: .malformedMessage,
                message: "sealed box of \(all.count - length) bytes is shorter than nonce and tag "
                    + "(\(AEAD.nonceByteCount + AEAD.tagByteCount))")
        }
        self.header = header
        self.headerLength = length
        self.serialized = all
    }

    /// Authenticates and decrypts. Checks, in order: protocol version (`unsupportedVersion`), that the header
    /// names `clientID`, `kind` and (when given) `round` (`unexpectedContext`), then the AEAD tag over header
    /// and ciphertext (`authenticationFailed`). Replay and ordering are the `ReplayGuard`'s job.
    public func open(using key: SymmetricKey, clientID: String, kind: MessageKind, round: UInt64? = nil) throws
        -> [UInt8]
    {
        try checkContext(clientID: clientID, kind: kind, round: round)
        return try withSealedParts { sealed, nonce, associatedData in
            try [UInt8](unsafeUninitializedCapacity: sealed.count - AEAD.tagByteCount) { out, count in
                try AEAD.decrypt(
                    sealed, nonce: nonce, using: key, authenticating: associatedData,
                    into: UnsafeMutableRawBufferPointer(out))
                count = sealed.count - AEAD.tagByteCount
            }
        }
    }

    /// `open` for a plaintext that is itself secret (a key): decrypted straight into `SecureBytes`.
    public func openSecret(using key: SymmetricKey, clientID: String, kind: MessageKind, round: UInt64? = nil) throws
        -> SecureBytes
    {
        try checkContext(clientID: clientID, kind: kind, round: round)
        return try withSealedParts { sealed, nonce, associatedData in
            var output = SecureBytes(zeros: sealed.count - AEAD.tagByteCount)
            try output.withUnsafeMutableBytes { out in
                try AEAD.decrypt(sealed, nonce: nonce, using: key, authenticating: associatedData, into: out)
            }
            return output
        }
    }

    private func checkContext(clientID: String, kind: MessageKind, round: UInt64?) throws {
        guard header.version == EnvelopeHeader.currentVersion else {
            throw SecurityError(
                code: .unsupportedVersion,
                message: "protocol version \(header.version), this build speaks \(EnvelopeHeader.currentVersion)")
        }
        guard header.clientID == clientID else {
            throw SecurityError(
                code: .unexpectedContext, message: "envelope for client '\(header.clientID)', expected '\(clientID)'")
        }
        guard header.kind == kind else {
            throw SecurityError(code: .unexpectedContext, message: "envelope of kind \(header.kind), expected \(kind)")
        }
        if let round, header.round != round {
            throw SecurityError(
                code: .unexpectedContext, message: "envelope for round \(header.round), expected round \(round)")
        }
    }

    /// Calls `body` with (nonce-less ciphertext and tag, nonce, encoded header) viewed inside `serialized`.
    private func withSealedParts<Result>(
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        let headerLength = self.headerLength
        return try serialized.withUnsafeBytes { all in
            let sealedStart = headerLength + AEAD.nonceByteCount
            return try body(
                UnsafeRawBufferPointer(rebasing: all[sealedStart...]),
                UnsafeRawBufferPointer(rebasing: all[headerLength..<sealedStart]),
                UnsafeRawBufferPointer(rebasing: all[..<headerLength]))
        }
    }
}

/// Rejects a message whose (round, sequence) is not strictly after the last one accepted from the same client
/// and kind: an equal pair is a replay (`replayedMessage`), a smaller one is re-ordered or stale
/// (`outOfOrderMessage`). Pairs compare round first, so a sender may restart its counter in a new round.
///
/// Feed it only authenticated headers (call after `Envelope.open`), or a forger could advance the window.
/// `Codable` so a coordinator can persist it with its state.
public struct ReplayGuard: Sendable, Hashable, Codable {
    struct Key: Hashable, Sendable, Codable {
        var clientID: String
        var kind: MessageKind
    }
    struct Position: Hashable, Sendable, Codable {
        var round: UInt64
        var sequence: UInt64
    }
    private var last: [Key: Position] = [:]

    public init() {}

    /// Records `header` as accepted, or throws without changing anything.
    public mutating func accept(_ header: EnvelopeHeader) throws {
        let key = Key(clientID: header.clientID, kind: header.kind)
        let position = Position(round: header.round, sequence: header.sequence)
        if let previous = last[key] {
            if position == previous {
                throw SecurityError(
                    code: .replayedMessage,
                    message:
                        "replayed \(header.kind) from '\(header.clientID)' (round \(header.round), sequence \(header.sequence))"
                )
            }
            if (position.round, position.sequence) < (previous.round, previous.sequence) {
                throw SecurityError(
                    code: .outOfOrderMessage,
                    message:
                        "\(header.kind) from '\(header.clientID)' at round \(header.round), sequence \(header.sequence) "
                        + "is older than the accepted round \(previous.round), sequence \(previous.sequence)")
            }
        }
        last[key] = position
    }

    /// Forgets a client (e.g. when it re-enrols with new keys).
    public mutating func forget(clientID: String) {
        last = last.filter { $0.key.clientID != clientID }
    }
}

/// The sending half of a session: seals payloads with increasing sequence numbers.
public struct EnvelopeSealer: Sendable {
    public let clientID: String
    private let key: SymmetricKey
    /// The sequence number of the next message.
    public private(set) var nextSequence: UInt64

    /// `key`: this side's `SessionKeys.transmit`.
    public init(clientID: String, key: SymmetricKey, firstSequence: UInt64 = 0) {
        self.clientID = clientID
        self.key = key
        self.nextSequence = firstSequence
    }

    /// Seals `payload` as the next message of this session; returns the wire bytes.
    public mutating func seal<Payload: ContiguousBytes>(_ payload: Payload, kind: MessageKind, round: UInt64) throws
        -> [UInt8]
    {
        let header = EnvelopeHeader(kind: kind, round: round, sequence: nextSequence, clientID: clientID)
        let envelope = try Envelope.seal(payload, header: header, using: key)
        nextSequence += 1
        return envelope.serialized
    }
}

/// The receiving half of a session: parses, authenticates, then checks ordering with its `ReplayGuard`.
public struct EnvelopeOpener: Sendable {
    public let clientID: String
    private let key: SymmetricKey
    public private(set) var replayGuard = ReplayGuard()

    /// `key`: this side's `SessionKeys.receive`.
    public init(clientID: String, key: SymmetricKey) {
        self.clientID = clientID
        self.key = key
    }

    /// Opens wire bytes expected to be a `kind` message (of `round`, when given). The guard advances only when
    /// the message authenticates and is fresh.
    public mutating func open<Bytes: Collection>(_ bytes: Bytes, kind: MessageKind, round: UInt64? = nil) throws
        -> (header: EnvelopeHeader, payload: [UInt8]) where Bytes.Element == UInt8
    {
        let envelope = try Envelope(serialized: bytes)
        let payload = try envelope.open(using: key, clientID: clientID, kind: kind, round: round)
        try replayGuard.accept(envelope.header)
        return (envelope.header, payload)
    }
}
