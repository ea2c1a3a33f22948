public import FedRecSecurity
public import Foundation
import Synchronization

/// A long poll (`GetRound`, `GetStage`) as its proofs authenticate it.
///
/// Every client a poll names proves the whole request with its session key (client to coordinator): an
/// XChaCha20-Poly1305 tag over an empty plaintext, with the request's digest and the client's place in it as
/// associated data (`PollProof`). So only the holders of those clients' keys can poll for them: no one else
/// learns whether they are selected or makes the coordinator send a model, and no field can be changed on the
/// way. The stamp lets the coordinator take each poll once (`PollBook`).
public struct PollRequest: Sendable, Hashable {
    public enum Call: UInt8, Sendable, CustomStringConvertible {
        case getRound = 1
        case getStage = 2
        /// A `RoundRequest` ending a `SubmitUpdate` stream (`UpdateMessage.next_round`), answered in the upload's
        /// answer. Its own call in the digest, so a proof made for one kind of request is not one for the other.
        case nextRound = 3

        public var description: String {
            switch self {
            case .getRound: "GetRound"
            case .getStage: "GetStage"
            case .nextRound: "SubmitUpdate's next-round request"
            }
        }
    }

    public var call: Call
    /// Microseconds since the Unix epoch on the caller's clock; strictly increasing per process (`PollStamper`).
    public var stamp: UInt64
    public var waitMilliseconds: UInt32
    /// GetRound: last epoch, round and attempt; GetStage: round, attempt and stage.
    public var fields: [UInt64]
    public var clientIDs: [String]

    /// `call` is `.getRound` for a `GetRound` poll or `.nextRound` for a stream's closing request.
    public init(_ request: Fedrec_V1_RoundRequest, call: Call = .getRound) {
        precondition(call != .getStage, "a RoundRequest is a GetRound poll or a next-round request")
        self.call = call
        stamp = request.stamp
        waitMilliseconds = request.waitMilliseconds
        fields = [request.lastEpoch, request.lastRound, UInt64(request.lastAttempt)]
        clientIDs = request.clientIds
    }

    public init(_ request: Fedrec_V1_StageRequest) {
        call = .getStage
        stamp = request.stamp
        waitMilliseconds = request.waitMilliseconds
        fields = [request.round, UInt64(request.attempt), UInt64(request.stage)]
        clientIDs = request.clientIds
    }

    /// SHA-256 of every field, each length-prefixed, so two different requests never share a digest.
    func digest() throws -> [UInt8] {
        var bytes = Array("fedrec-poll-v1".utf8)
        func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
        bytes.append(call.rawValue)
        u64(stamp)
        u64(UInt64(waitMilliseconds))
        u64(UInt64(fields.count))
        fields.forEach(u64)
        u64(UInt64(clientIDs.count))
        for id in clientIDs {
            let utf8 = Array(id.utf8)
            u64(UInt64(utf8.count))
            bytes += utf8
        }
        return try SHA256.hash(bytes)
    }

    /// What the proof by `clientIDs[index]` authenticates: the request's digest and that index.
    static func associatedData(digest: [UInt8], index: Int) -> [UInt8] {
        var bytes = Array("fedrec-poll-proof".utf8) + digest
        withUnsafeBytes(of: UInt64(index).bigEndian) { bytes += $0 }
        return bytes
    }

    /// One proof per named client, in order; `keys[i]` is `clientIDs[i]`'s `SessionKeys.transmit`.
    public func proofs(keys: [SymmetricKey]) throws -> [Data] {
        precondition(keys.count == clientIDs.count, "one key per named client")
        let digest = try digest()
        return try keys.enumerated().map { index, key in
            try KeyProof.make(key: key, authenticating: Self.associatedData(digest: digest, index: index))
        }
    }

    /// Checks every proof (`proofs[i]` under `keys[i]`, the coordinator's `SessionKeys.receive` of
    /// `clientIDs[i]`); returns the index of the first that is malformed or does not authenticate, nil when all
    /// do. The caller checks the counts match.
    public func firstUnproven(_ proofs: [Data], keys: [SymmetricKey]) throws -> Int? {
        precondition(proofs.count == clientIDs.count && keys.count == clientIDs.count, "one proof and key per client")
        let digest = try digest()
        for (index, proof) in proofs.enumerated()
        where !KeyProof.verifies(proof, key: keys[index], authenticating: Self.associatedData(digest: digest, index: index))
        {
            return index
        }
        return nil
    }
}

extension PollRequest {
    /// The coordinator's check of a poll's proofs, before any lookup: a proof per named client
    /// (`authenticationFailed`), every named client enrolled (`notEnrolled`: `keys[i]` is the coordinator's
    /// `SessionKeys.receive` of `clientIDs[i]`, nil when it has no session), then every proof
    /// (`authenticationFailed`, naming the first client whose proof does not check). Freshness is `PollBook`'s.
    public func verify(_ proofs: [Data], keys: [SymmetricKey?]) throws {
        precondition(keys.count == clientIDs.count, "one key slot per named client")
        let rpc = call.description
        guard !clientIDs.isEmpty else {
            throw ProtocolError(code: .malformedPayload, message: "\(rpc) names no client")
        }
        guard proofs.count == clientIDs.count else {
            throw ProtocolError(
                code: .authenticationFailed,
                message: "\(rpc) carries \(proofs.count) proof(s) for \(clientIDs.count) client(s)",
                client: clientIDs[0])
        }
        if let missing = keys.firstIndex(where: { $0 == nil }) {
            throw ProtocolError(
                code: .notEnrolled, message: "\(rpc) names a client that is not enrolled", client: clientIDs[missing])
        }
        if let unproven = try firstUnproven(proofs, keys: keys.map { $0! }) {
            throw ProtocolError(
                code: .authenticationFailed, message: "\(rpc) proof does not authenticate", client: clientIDs[unproven])
        }
    }
}

public enum PollProof {
    /// Nonce and tag: an empty plaintext seals to nothing else.
    public static let byteCount = KeyProof.byteCount
}

/// A proof of holding a session key: an XChaCha20-Poly1305 tag over an empty plaintext, with what it proves as
/// associated data. Polls (`PollRequest`) and message headers (`HeaderProof`) carry one per named client.
enum KeyProof {
    /// Nonce and tag: an empty plaintext seals to nothing else.
    static let byteCount = AEAD.nonceByteCount + AEAD.tagByteCount

    static func make(key: SymmetricKey, authenticating data: [UInt8]) throws -> Data {
        Data(try AEAD.seal([UInt8](), using: key, authenticating: data).combined)
    }

    /// Whether `proof` is a well-formed tag that authenticates `data` under `key`.
    static func verifies(_ proof: Data, key: SymmetricKey, authenticating data: [UInt8]) -> Bool {
        guard proof.count == byteCount, let box = try? AEAD.SealedBox(combined: proof) else { return false }
        return (try? AEAD.open(box, using: key, authenticating: data)) != nil
    }
}

/// Stamps for one process's polls: microseconds since the Unix epoch, strictly increasing (a second poll in the
/// same microsecond, or after the clock stepped back, gets the last stamp plus one).
public final class PollStamper: Sendable {
    private let last = Mutex<UInt64>(0)
    private let clock: @Sendable () -> UInt64

    public init(clock: @escaping @Sendable () -> UInt64 = PollStamper.wallMicroseconds) { self.clock = clock }

    public func next() -> UInt64 {
        let now = clock()
        return last.withLock { last in
            last = max(now, last + 1)
            return last
        }
    }

    /// This host's real-time clock in microseconds since the Unix epoch.
    @Sendable public static func wallMicroseconds() -> UInt64 {
        UInt64(max(0, Date().timeIntervalSince1970 * 1_000_000))
    }
}

/// The polls a coordinator took recently, so that each is taken once: a poll is admitted only when its stamp is
/// within `window` of the coordinator's clock and later than every poll taken before from the same prover (the
/// first client it names) for the same call. A process's stamps strictly increase (`PollStamper`) and its polls
/// are sequential, so anything else is a replay; the book holds one stamp per (prover, call), however fast an
/// enrolled client polls. Stamps older than the window are forgotten (a replay of one is stale anyway). Feed it
/// only polls whose proofs checked, or a forger could fill it.
public struct PollBook: Sendable {
    /// How far a poll's stamp may be from the coordinator's clock, either way (clocks of hosts differ a little).
    public static let window: UInt64 = 60_000_000

    public enum Refusal: Sendable, Hashable, CustomStringConvertible {
        /// The stamp is `microseconds` behind the coordinator's clock, beyond the window.
        case stale(microseconds: UInt64)
        /// The stamp is `microseconds` ahead of the coordinator's clock, beyond the window.
        case ahead(microseconds: UInt64)
        /// The stamp is `microseconds` before this coordinator started: a poll of an earlier run, replayed (or a
        /// caller whose clock is behind the coordinator's, which its next polls outgrow).
        case beforeStart(microseconds: UInt64)
        /// The prover took a poll of this call stamped as late or later before.
        case replayed

        public var description: String {
            switch self {
            case .stale(let us):
                "stamped \(us / 1_000_000) s before the coordinator's clock (a replay, or the clocks differ by more "
                    + "than \(PollBook.window / 1_000_000) s)"
            case .ahead(let us):
                "stamped \(us / 1_000_000) s after the coordinator's clock (the clocks differ by more than "
                    + "\(PollBook.window / 1_000_000) s)"
            case .beforeStart(let us):
                "stamped \(Double(us / 1_000) / 1_000) s before this coordinator started (a replay from an earlier "
                    + "run, or a clock behind the coordinator's)"
            case .replayed:
                "already taken (a replay): stamped no later than the last poll taken from this client (so is a "
                    + "restarted process whose clock went back, until its clock passes that poll)"
            }
        }
    }

    struct Key: Hashable {
        var prover: String
        var call: UInt8
    }

    /// The latest stamp taken per prover and call.
    private var latestTaken: [Key: UInt64] = [:]
    private var lastPrune: UInt64 = 0
    /// The latest coordinator clock reading seen: pruning never goes by an earlier one (a clock stepped back
    /// would otherwise forget polls still within the window).
    private var latest: UInt64 = 0
    /// When this coordinator started: polls stamped earlier belong to an earlier run (whose book is gone).
    public let notBefore: UInt64

    /// `notBefore`: the coordinator's clock when it started (0: no such bound, for tests).
    public init(notBefore: UInt64 = 0) { self.notBefore = notBefore }

    /// (Prover, call) pairs remembered (for tests and bounds).
    public var count: Int { latestTaken.count }

    /// Takes the poll `prover` (the first client it names) made at `stamp`, or says why not; `now` is the
    /// coordinator's clock in microseconds since the Unix epoch.
    public mutating func admit(prover: String, call: PollRequest.Call, stamp: UInt64, now: UInt64) -> Refusal? {
        if stamp < now, now - stamp > Self.window { return .stale(microseconds: now - stamp) }
        if stamp > now, stamp - now > Self.window { return .ahead(microseconds: stamp - now) }
        if stamp < notBefore { return .beforeStart(microseconds: notBefore - stamp) }
        latest = max(latest, now)
        if latest > lastPrune + Self.window {
            let horizon = latest - min(latest, Self.window)
            latestTaken = latestTaken.filter { $0.value >= horizon }
            lastPrune = latest
        }
        let key = Key(prover: prover, call: call.rawValue)
        if let last = latestTaken[key], stamp <= last { return .replayed }
        latestTaken[key] = stamp
        return nil
    }

    /// Takes `poll` (its proofs already checked), or throws the refusal: `replayed`, or `stalePoll` for a stamp
    /// outside the window or before the coordinator started.
    public mutating func take(_ poll: PollRequest, now: UInt64) throws {
        guard let refusal = admit(prover: poll.clientIDs[0], call: poll.call, stamp: poll.stamp, now: now) else {
            return
        }
        throw ProtocolError(
            code: refusal == .replayed ? .replayed : .stalePoll, message: "\(poll.call) \(refusal)",
            client: poll.clientIDs[0])
    }
}
