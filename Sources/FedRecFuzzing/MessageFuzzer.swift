public import FedRecFederation
public import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
import SwiftProtobuf

/// The untrusted-input paths a fuzz run drives, each from valid seed messages through mutations.
public enum FuzzTarget: String, CaseIterable, Sendable, Hashable {
    /// Coordinator: a sealed update envelope, as `CoordinatorCore.receive` takes it (parse, header check, AEAD
    /// open, replay guard). Only an unmodified, never-seen envelope may be accepted.
    case sealedUpdate = "sealed update"
    /// Coordinator: an update plaintext behind a valid seal (a dishonest enrolled client): decode, then
    /// `UpdateValidator`. Anything accepted must be finite, of the run's shapes and within the bounds.
    case updatePayload = "update payload"
    /// Client: a round assignment plaintext (global model, optional secure-aggregation section).
    case roundAssignment = "round assignment"
    /// Either side: a chunked payload's plan and chunks, reassembled by `ChunkAssembler`.
    case chunkStream = "chunk stream"
    /// Secure aggregation, coordinator: advertised keys, parsed, then checked by the server (signature).
    case advertisedKeys = "advertised keys"
    /// Secure aggregation, client: the roster of advertised keys.
    case roster
    /// Secure aggregation, both: a list of encrypted shares.
    case encryptedShares = "encrypted shares"
    /// Secure aggregation, coordinator: a masked input.
    case maskedInput = "masked input"
    /// Secure aggregation, client: an unmask request.
    case unmaskRequest = "unmask request"
    /// Secure aggregation, coordinator: an unmask response.
    case unmaskResponse = "unmask response"
    /// Coordinator: a long poll (`GetRound` or `GetStage` request as gRPC delivers it, or a `SubmitUpdate` stream's
    /// closing next-round request) through the proof checks
    /// and the poll book (`CoordinatorCore.authenticatePoll`). Only a request asking exactly what was proved, and
    /// only once, may be taken.
    case poll
}

/// What happened to the messages of one target.
public struct FuzzTally: Sendable, Hashable {
    public var messages = 0
    public var accepted = 0
    /// Refusals by error kind (`"protocol.malformedPayload"`, `"security.authenticationFailed"`, ...).
    public var rejected: [String: Int] = [:]
    /// Messages whose outcome broke an invariant (see `MessageFuzzer`).
    public var violations = 0

    public init() {}
    public var rejectedCount: Int { rejected.values.reduce(0, +) }
}

/// A fuzz run's figures.
public struct FuzzReport: Sendable {
    public var tallies: [FuzzTarget: FuzzTally] = [:]
    /// The first violations found (at most `MessageFuzzer.keptViolations`), each naming its target and message.
    public var violations: [String] = []
    public var messages: Int { tallies.values.reduce(0) { $0 + $1.messages } }
    public var violationCount: Int { tallies.values.reduce(0) { $0 + $1.violations } }
}

/// Structure-aware mutation fuzzing of every parser that takes bytes from the other side, without a network:
/// each message is a valid seed (built with the real encoders, sealers and SecAgg+ machines) put through one
/// mutation (bit flips, boundary words, NaN/infinity floats, truncation, extension, deletion, duplication,
/// splicing, random bytes, or none), then handed to the parser the receiving process uses.
///
/// Invariants checked for every message (a breach is a *violation*, counted and described):
/// - it is refused with a typed error (`ProtocolError`, `SecurityError`, `FederationError`,
///   `SecureAggregationError`), or accepted;
/// - a sealed envelope is accepted only unmodified and only once (a replay, also of an older one, is refused);
/// - an accepted update or assignment has the run's shapes, finite values and counts within the bounds;
/// - an accepted message re-encodes to exactly the bytes received (parsers are strict: one encoding per message);
/// - advertised keys that parse but differ from the seed are refused by the server (bad signature).
/// A crash or trap ends the run, which is the fuzzer's other finding.
public struct MessageFuzzer {
    public static let keptViolations = 20

    /// Shapes of the fuzzed model: small, so a million messages take seconds.
    public static let shapes = PayloadShapes(
        userTowerCount: 40 * 8 + 8 * 16 + 16 + 16 * 8 + 8, itemRows: 40, dimension: 8)
    static let round = 7
    static let client = "user-1"
    static let chunkSize = 256
    static let limits = (deltaNorm: 1e3, gradientNorm: 1e3, examples: 10_000)

    /// The mutation stream of the target being fuzzed; each target has its own (`streams`), so one target's
    /// outcomes (which steer its later draws) never shift another's mutations.
    private var rng: SplitMix64
    private var streams: [FuzzTarget: SplitMix64] = [:]
    private let seeds: FuzzSeeds
    private let validator: UpdateValidator
    private var replayGuard = ReplayGuard()
    private var sequence: UInt64 = 0
    /// Recently accepted envelopes, replayed now and then.
    private var acceptedEnvelopes: [[UInt8]] = []
    /// Poll target: the enrolled clients' keys as a client holds them (transmit) and as the coordinator does
    /// (receive), the coordinator's poll book, its clock (µs; each poll is stamped at it), and recently taken
    /// polls, replayed now and then.
    private let pollClients: [(id: String, transmit: SymmetricKey, receive: SymmetricKey)]
    private var pollBook = PollBook()
    private var pollClock: UInt64 = 1_800_000_000_000_000
    private var takenPolls: [(call: PollRequest.Call, bytes: [UInt8])] = []
    public private(set) var report = FuzzReport()

    public init(seed: UInt64) throws {
        rng = SplitMix64(seed: seed)
        for (index, target) in FuzzTarget.allCases.enumerated() {
            streams[target] = SplitMix64.stream(seed: seed, index: UInt64(index))
        }
        seeds = try FuzzSeeds(seed: seed)
        let coordinator = try KeyAgreementKey()
        pollClients = try (1...3).map { index in
            let client = try KeyAgreementKey()
            return (
                "user-\(index)", try client.clientSessionKeys(serverPublicKey: coordinator.publicKey).transmit,
                try coordinator.serverSessionKeys(clientPublicKey: client.publicKey).receive
            )
        }
        validator = UpdateValidator(
            layout: ParameterLayout([("tower", [Self.shapes.userTowerCount])]), itemRows: Self.shapes.itemRows,
            dimension: Self.shapes.dimension, maximumDeltaNorm: Self.limits.deltaNorm,
            maximumItemGradientNorm: Self.limits.gradientNorm, maximumExampleCount: Self.limits.examples)
    }

    /// Fuzzes `count` messages, cycling through the targets.
    public mutating func run(messages count: Int) {
        let targets = FuzzTarget.allCases
        for i in 0..<count { fuzzOne(targets[i % targets.count]) }
    }

    /// One mutated message of `target`.
    public mutating func fuzzOne(_ target: FuzzTarget) {
        rng = streams[target]!
        defer { streams[target] = rng }
        let outcome: Result<String?, any Error>
        let input: [UInt8]
        switch target {
        case .sealedUpdate:
            (input, outcome) = sealedUpdate()
        case .chunkStream:
            (input, outcome) = chunkStream()
        case .poll:
            (input, outcome) = poll()
        default:
            let seed = pick(seeds.messages[target]!)
            input = mutate(seed, splicingWith: pick(seeds.messages[target]!))
            outcome = Result { try Self.check(target, input, seed: seed, seeds: seeds, validator: validator) }
        }
        record(target, input: input, outcome)
    }

    private mutating func record(_ target: FuzzTarget, input: [UInt8], _ outcome: Result<String?, any Error>) {
        var tally = report.tallies[target] ?? FuzzTally()
        tally.messages += 1
        var violation: String? = nil
        switch outcome {
        case .success(nil):
            tally.accepted += 1
        case .success(let problem?):
            tally.accepted += 1
            violation = problem
        case .failure(let error):
            if let kind = Self.errorKind(error) {
                tally.rejected[kind, default: 0] += 1
            } else {
                violation = "untyped error \(type(of: error)): \(error)"
            }
        }
        if let violation {
            tally.violations += 1
            if report.violations.count < Self.keptViolations {
                let head = input.prefix(48).map { String($0, radix: 16) }.joined(separator: " ")
                report.violations.append("\(target.rawValue), \(input.count) bytes [\(head) ...]: \(violation)")
            }
        }
        report.tallies[target] = tally
    }

    /// The error's family and code, or nil for an error no parser should throw.
    static func errorKind(_ error: any Error) -> String? {
        switch error {
        case let e as ProtocolError: "protocol.\(e.code)"
        case let e as SecurityError: "security.\(e.code)"
        case let e as FederationError: "federation.\(e.code)"
        case let e as SecureAggregationError: "secagg.\(e.code)"
        default: nil
        }
    }

    // MARK: Targets

    /// A freshly sealed update, mutated, through parse / header check / open / replay guard; sometimes an old
    /// accepted envelope instead (a replay). Returns nil (fine) or the violation.
    private mutating func sealedUpdate() -> ([UInt8], Result<String?, any Error>) {
        if !acceptedEnvelopes.isEmpty, next(16) == 0 {
            let replay = pick(acceptedEnvelopes)
            return (replay, Result { try open(replay) }.map { _ in "a replayed envelope was accepted" })
        }
        sequence += 1
        let original: [UInt8]
        do {
            original = try Envelope.seal(
                pick(seeds.messages[.updatePayload]!),
                header: EnvelopeHeader(
                    kind: .modelUpdate, round: UInt64(Self.round), sequence: sequence, clientID: Self.client),
                using: seeds.sessionKey
            ).serialized
        } catch {
            return ([], .success("sealing a seed failed: \(error)"))
        }
        let input = next(8) == 0 ? original : mutate(original, splicingWith: original)
        let outcome = Result { try open(input) }.map { _ -> String? in
            guard input == original else { return "a modified envelope opened" }
            if acceptedEnvelopes.count == 64 { acceptedEnvelopes.removeFirst() }
            acceptedEnvelopes.append(input)
            return nil
        }
        return (input, outcome)
    }

    /// The coordinator's steps for a submitted envelope (`CoordinatorCore.receive`, before decoding).
    private mutating func open(_ bytes: [UInt8]) throws {
        let envelope = try Envelope(serialized: bytes)
        guard envelope.header.clientID == Self.client else {
            throw SecurityError(code: .unexpectedContext, message: "envelope for another client")
        }
        _ = try envelope.open(
            using: seeds.sessionKey, clientID: Self.client, kind: .modelUpdate, round: UInt64(Self.round))
        try replayGuard.accept(envelope.header)
    }

    /// A chunked payload with its plan mutated or its chunks dropped, repeated, reordered, cut or grown.
    private mutating func chunkStream() -> ([UInt8], Result<String?, any Error>) {
        let payload = Array(pick(seeds.messages[.updatePayload]!).prefix(next(1_200)))
        let (plan, slices) = Chunker.split(payload, chunkSize: Self.chunkSize)
        var announced = plan
        var chunks = slices.enumerated().map { (index: $0.offset, data: Array($0.element)) }
        switch next(9) {
        case 0: announced.totalLength = pickBoundary(around: plan.totalLength)
        case 1: announced.chunkCount = pickBoundary(around: plan.chunkCount)
        case 2: chunks.remove(at: next(chunks.count))
        case 3: chunks.insert(chunks[next(chunks.count)], at: next(chunks.count + 1))
        case 4:
            if chunks.count > 1 { chunks.swapAt(next(chunks.count), next(chunks.count)) }
        case 5: chunks[next(chunks.count)].index = pickBoundary(around: chunks.count)
        case 6:
            let k = next(chunks.count)
            chunks[k].data = Array(chunks[k].data.prefix(next(chunks[k].data.count + 1)))
        case 7: chunks[next(chunks.count)].data += [UInt8](repeating: 0xAB, count: 1 + next(300))
        default: break  // unmodified
        }
        let maximum = 1_000
        let outcome = Result { () -> String? in
            var assembler = try ChunkAssembler(plan: announced, chunkSize: Self.chunkSize, maximumLength: maximum)
            for chunk in chunks where !assembler.isComplete { try assembler.append(index: chunk.index, chunk.data) }
            let assembled = try assembler.finish()
            let fed = chunks.prefix(announced.chunkCount)
            if assembled.count != announced.totalLength || assembled.count > maximum {
                return "reassembled \(assembled.count) bytes for \(announced.totalLength) announced (limit \(maximum))"
            }
            if fed.map(\.index) != Array(0..<announced.chunkCount) || assembled != fed.flatMap(\.data) {
                return "reassembled chunks out of order or not as sent"
            }
            return nil
        }
        return (Array(payload.prefix(16)), outcome)  // the start of the payload, to describe a violation
    }

    /// A freshly stamped and proved poll (GetRound, GetStage or a next-round request, naming one to three enrolled
    /// clients and now and then one that is not), as gRPC hands it over, mutated, through the coordinator's checks;
    /// sometimes a poll taken before instead (a replay), or one stamped outside the window.
    private mutating func poll() -> ([UInt8], Result<String?, any Error>) {
        pollClock += 1_000
        let now = pollClock
        if !takenPolls.isEmpty, next(16) == 0 {
            let replay = pick(takenPolls)
            let outcome = Result { try takePoll(replay.bytes, call: replay.call, now: now) }
            return (replay.bytes, outcome.map { _ in "a replayed poll was taken" })
        }
        let call = pick([PollRequest.Call.getRound, .getStage, .nextRound])
        var named = Array(pollClients.shuffled(using: &rng).prefix(1 + next(3)))
        let stranger = next(32) == 0
        if stranger { named[next(named.count)].id = "user-9" }  // not enrolled (its proof is under a known key)
        // In-window stamps jitter by less than half the clock's step, so they increase poll after poll as a
        // process's do (the book takes only a stamp later than the prover's last); one in 32 is outside the window.
        let skew: UInt64 = next(32) == 0 ? PollBook.window + 1 + UInt64(next(1_000_000)) : UInt64(next(400))
        let stamp = next(2) == 0 ? now &- skew : now &+ skew
        let words = (0..<3).map { _ in UInt64(next(4)) == 0 ? rng.next() : UInt64(next(8)) }
        let wait = UInt32(next(6_000))
        let ids = named.map(\.id)
        let original: [UInt8]
        do {
            switch call {
            case .getRound, .nextRound:
                var request = Fedrec_V1_RoundRequest.with {
                    $0.clientIds = ids
                    $0.waitMilliseconds = wait
                    $0.lastEpoch = words[0]
                    $0.lastRound = words[1]
                    $0.lastAttempt = UInt32(truncatingIfNeeded: words[2])
                    $0.stamp = stamp
                }
                request.proofs = try PollRequest(request, call: call).proofs(keys: named.map(\.transmit))
                original = try request.serializedBytes()
            case .getStage:
                var request = Fedrec_V1_StageRequest.with {
                    $0.clientIds = ids
                    $0.waitMilliseconds = wait
                    $0.round = words[0]
                    $0.attempt = UInt32(truncatingIfNeeded: words[1])
                    $0.stage = UInt32(truncatingIfNeeded: words[2])
                    $0.stamp = stamp
                }
                request.proofs = try PollRequest(request).proofs(keys: named.map(\.transmit))
                original = try request.serializedBytes()
            }
        } catch {
            return ([], .success("making a seed poll failed: \(error)"))
        }
        let expected = try? Self.pollRequest(original, call: call).poll
        let input = next(8) == 0 ? original : mutate(original, splicingWith: original)
        let outcome = Result { try takePoll(input, call: call, now: now) }.map { taken -> String? in
            if stranger { return "a poll naming a client that is not enrolled was taken" }
            if skew > PollBook.window { return "a poll stamped outside the window was taken" }
            guard taken == expected else { return "a modified poll was taken" }
            if takenPolls.count == 64 { takenPolls.removeFirst() }
            takenPolls.append((call, input))
            return nil
        }
        return (input, outcome)
    }

    /// Decodes a poll as gRPC would (a message that does not decode never reaches the handler; refused here as
    /// `malformedPayload`).
    static func pollRequest(_ bytes: [UInt8], call: PollRequest.Call) throws -> (poll: PollRequest, proofs: [Data]) {
        do {
            switch call {
            case .getRound, .nextRound:
                let request = try Fedrec_V1_RoundRequest(serializedBytes: bytes)
                return (PollRequest(request, call: call), request.proofs)
            case .getStage:
                let request = try Fedrec_V1_StageRequest(serializedBytes: bytes)
                return (PollRequest(request), request.proofs)
            }
        } catch {
            throw ProtocolError(code: .malformedPayload, message: "not a \(call) request: \(error)")
        }
    }

    /// The coordinator's steps for a poll (`CoordinatorCore.authenticatePoll`); returns the poll taken.
    private mutating func takePoll(_ bytes: [UInt8], call: PollRequest.Call, now: UInt64) throws -> PollRequest {
        let (poll, proofs) = try Self.pollRequest(bytes, call: call)
        let keyring = Dictionary(uniqueKeysWithValues: pollClients.map { ($0.id, $0.receive) })
        try poll.verify(proofs, keys: poll.clientIDs.map { keyring[$0] })
        try pollBook.take(poll, now: now)
        return poll
    }

    /// Parses `bytes` as `target` the way the receiving process does; nil when the outcome keeps every
    /// invariant, else the violation. Throws the parser's refusal.
    static func check(
        _ target: FuzzTarget, _ bytes: [UInt8], seed: [UInt8], seeds: FuzzSeeds, validator: UpdateValidator
    ) throws -> String? {
        switch target {
        case .updatePayload:
            let update = try ClientUpdatePayload.decode(bytes, shapes: shapes)
            try validator.validate(update, client: client, round: round)
            if let problem = FuzzInvariants.updateProblem(update, shapes: shapes, limits: limits) { return problem }
            // Updates have several encodings (dense or block-sparse delta, float32 or bfloat16); float32 holds
            // every decoded value exactly.
            let again = try ClientUpdatePayload.decode(ClientUpdatePayload.encode(update), shapes: shapes)
            return again == update ? nil : "an accepted update does not survive re-encoding"
        case .roundAssignment:
            let model = try GlobalModelPayload(decoding: bytes, shapes: shapes, round: round)
            if let problem = FuzzInvariants.assignmentProblem(model, shapes: shapes, round: round) { return problem }
            return model.encoded() == bytes ? nil : "an accepted assignment re-encodes differently"
        case .advertisedKeys:
            let keys = try AdvertisedKeys(serialized: bytes)
            guard keys.serialized() == bytes else { return "accepted advertised keys re-encode differently" }
            var server = seeds.advertisingServer
            try server.receive(keys)
            return seeds.messages[.advertisedKeys]!.contains(bytes) ? nil : "the server took modified advertised keys"
        case .roster:
            return try Roster(serialized: bytes).serialized() == bytes ? nil : "a roster re-encodes differently"
        case .encryptedShares:
            let (round, shares) = try EncryptedShare.list(serialized: bytes)
            return EncryptedShare.serialized(shares, round: round) == bytes ? nil : "shares re-encode differently"
        case .maskedInput:
            return try MaskedInput(serialized: bytes).serialized() == bytes
                ? nil : "a masked input re-encodes differently"
        case .unmaskRequest:
            return try UnmaskRequest(serialized: bytes).serialized() == bytes ? nil : "a request re-encodes differently"
        case .unmaskResponse:
            return try UnmaskResponse(serialized: bytes).serialized() == bytes
                ? nil : "a response re-encodes differently"
        case .sealedUpdate, .chunkStream, .poll:
            preconditionFailure("\(target) is driven by its own generator")
        }
    }

    // MARK: Mutations

    private mutating func next(_ bound: Int) -> Int { bound <= 1 ? 0 : Int(rng.next() % UInt64(bound)) }
    private mutating func pick<T>(_ values: [T]) -> T { values[next(values.count)] }
    private mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: rng.next()) }

    /// A count near `value` or at a boundary.
    private mutating func pickBoundary(around value: Int) -> Int {
        pick([value - 1, value + 1, 0, -1, Int(Int32.max), Int(UInt32.max), value * 2, Int.max / 2])
    }

    /// Words worth writing over a field: lengths at their limits, NaN, infinities, signed extremes.
    static let interestingWords: [UInt32] = [
        0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFE,
        Float.nan.bitPattern, Float.infinity.bitPattern, (-Float.infinity).bitPattern,
        Float.signalingNaN.bitPattern, Float.greatestFiniteMagnitude.bitPattern, (1e30 as Float).bitPattern,
    ]

    /// One mutation of `seed` (sometimes none; `other` supplies splices).
    mutating func mutate(_ seed: [UInt8], splicingWith other: [UInt8]) -> [UInt8] {
        var bytes = seed
        switch next(12) {
        case 0:  // flip 1-8 bits
            guard !bytes.isEmpty else { break }
            for _ in 0...next(8) { bytes[next(bytes.count)] ^= UInt8(1) << UInt8(next(8)) }
        case 1:  // boundary bytes
            guard !bytes.isEmpty else { break }
            for _ in 0...next(4) { bytes[next(bytes.count)] = pick([0, 1, 0x7F, 0x80, 0xFE, 0xFF]) }
        case 2, 3:  // a boundary word, little-endian (fields and floats) or big-endian (envelope headers)
            guard bytes.count >= 4 else { break }
            let at = next(2) == 0 ? next(bytes.count / 4) * 4 : next(bytes.count - 3)
            var word = pick(Self.interestingWords)
            if next(2) == 0 { word = word.byteSwapped }
            for k in 0..<4 { bytes[at + k] = UInt8(truncatingIfNeeded: word >> (8 * UInt32(k))) }
        case 4:  // a length-like field near its value
            guard bytes.count >= 4 else { break }
            let at = next(bytes.count - 3)
            var word: UInt32 = 0
            for k in 0..<4 { word |= UInt32(bytes[at + k]) << (8 * UInt32(k)) }
            word = next(2) == 0 ? word &+ 1 : word &- 1
            for k in 0..<4 { bytes[at + k] = UInt8(truncatingIfNeeded: word >> (8 * UInt32(k))) }
        case 5:  // truncate
            bytes.removeLast(bytes.isEmpty ? 0 : 1 + next(bytes.count))
        case 6:  // extend
            for _ in 0...next(64) { bytes.append(byte()) }
        case 7:  // delete a range
            guard !bytes.isEmpty else { break }
            let start = next(bytes.count)
            bytes.removeSubrange(start..<min(bytes.count, start + 1 + next(32)))
        case 8:  // duplicate a range
            guard !bytes.isEmpty else { break }
            let start = next(bytes.count)
            let range = Array(bytes[start..<min(bytes.count, start + 1 + next(32))])
            bytes.insert(contentsOf: range, at: next(bytes.count + 1))
        case 9:  // splice: a prefix of this seed, a suffix of another
            let cut = next(bytes.count + 1)
            let from = next(other.count + 1)
            bytes = Array(bytes[..<cut]) + other[from...]
        case 10:  // random bytes behind the seed's first bytes (its magic)
            let kept = min(bytes.count, next(12))
            bytes = Array(bytes[..<kept]) + (0..<next(2 * seed.count + 1)).map { _ in byte() }
        default:  // unmodified
            break
        }
        return bytes
    }
}

/// Invariants of accepted messages, independent of the parsers and validators they check.
public enum FuzzInvariants {
    /// Why `update` should not have been accepted for `shapes` within `limits`, or nil.
    public static func updateProblem(
        _ update: ClientUpdate, shapes: PayloadShapes, limits: (deltaNorm: Double, gradientNorm: Double, examples: Int)
    ) -> String? {
        let gradient = update.itemEmbeddingGradient
        guard update.userTowerDelta.count == shapes.userTowerCount else { return "delta of the wrong length" }
        guard gradient.rows == shapes.itemRows, gradient.columns == shapes.dimension else {
            return "gradient of the wrong shape"
        }
        guard gradient.storedValues.count <= shapes.itemRows * shapes.dimension else { return "gradient too long" }
        guard (1...limits.examples).contains(update.exampleCount) else { return "example count out of bounds" }
        guard update.meanLoss.isFinite else { return "non-finite loss" }
        var deltaSquares = 0.0
        for v in update.userTowerDelta {
            guard v.isFinite else { return "non-finite delta" }
            deltaSquares += Double(v) * Double(v)
        }
        var gradientSquares = 0.0
        for v in gradient.storedValues {
            guard v.isFinite else { return "non-finite gradient" }
            gradientSquares += Double(v) * Double(v)
        }
        guard deltaSquares.squareRoot() <= limits.deltaNorm else { return "delta norm above its bound" }
        guard gradientSquares.squareRoot() <= limits.gradientNorm else { return "gradient norm above its bound" }
        return nil
    }

    /// Why `model` should not have been accepted as round `round`'s assignment for `shapes`, or nil.
    public static func assignmentProblem(_ model: GlobalModelPayload, shapes: PayloadShapes, round: Int) -> String? {
        guard model.round == round else { return "assignment of another round" }
        guard model.userTower.count == shapes.userTowerCount,
            model.itemEmbeddings.rows == shapes.itemRows, model.itemEmbeddings.columns == shapes.dimension
        else { return "assignment of the wrong shape" }
        guard model.userTower.allSatisfy(\.isFinite), model.itemEmbeddings.storage.allSatisfy(\.isFinite) else {
            return "non-finite assignment"
        }
        if let secure = model.secure {
            if (try? secure.parameters.validate()) == nil { return "invalid secure-aggregation parameters" }
            if secure.identityKeys.count != secure.parameters.participants.count { return "identity keys miscounted" }
        }
        return nil
    }
}
