public import FedRecFederation
public import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
import Logging
import Synchronization

/// Elapsed time on an injected clock, as the round machine's instant.
public struct ElapsedClock: Sendable {
    private let elapsed: @Sendable () -> Duration
    private let sleeper: @Sendable (Duration) async throws -> Void

    public init(_ clock: any Clock<Duration>) {
        self = Self.opening(clock)
    }

    private init(
        elapsed: @escaping @Sendable () -> Duration, sleeper: @escaping @Sendable (Duration) async throws -> Void
    ) {
        self.elapsed = elapsed
        self.sleeper = sleeper
    }

    private static func opening<C: Clock<Duration>>(_ clock: C) -> ElapsedClock {
        let start = clock.now
        return ElapsedClock(elapsed: { start.duration(to: clock.now) }, sleeper: { try await clock.sleep(for: $0) })
    }

    public var now: SimulatedInstant { SimulatedInstant(offset: elapsed()) }
    public func sleep(for duration: Duration) async throws { try await sleeper(duration) }
}

/// One refused message, as recorded (and logged) by the coordinator.
public struct RejectionRecord: Sendable, Hashable, CustomStringConvertible {
    public var code: String
    public var client: String?
    public var round: Int?
    public var message: String
    public var description: String {
        "\(code) (round \(round.map(String.init) ?? "-"), client \(client ?? "-")): \(message)"
    }

    public init(code: String, client: String?, round: Int?, message: String) {
        self.code = code
        self.client = client
        self.round = round
        self.message = message
    }
}

/// The coordinator's record of refused messages: the most recent `capacity` (1,000 unless told) in full, and how
/// many there were in all.
public typealias RejectionLog = BoundedLog<RejectionRecord>

/// How many refusals the coordinator writes to its log: at most `limit` per `window`; the first refusal of a
/// later window brings one line with the count of those left out. Every refusal is still counted and recorded
/// (`RejectionLog`); only the log lines are bounded, so a flood of bad messages cannot fill the disk.
public struct RefusalLogBudget: Sendable, Equatable {
    public static let limit = 100
    public static let window: Duration = .seconds(10)

    private var windowStart: Duration? = nil
    private var logged = 0
    private var leftOut = 0

    public init() {}

    /// Whether the refusal at `now` (a time on the coordinator's clock) is logged, and how many of the previous
    /// window were left out (nonzero only for the first refusal of a new window).
    public mutating func admit(at now: Duration) -> (log: Bool, leftOutBefore: Int) {
        var leftOutBefore = 0
        if let start = windowStart, now - start < Self.window {
            // Same window.
        } else {
            leftOutBefore = leftOut
            windowStart = now
            logged = 0
            leftOut = 0
        }
        guard logged < Self.limit else {
            leftOut += 1
            return (false, leftOutBefore)
        }
        logged += 1
        return (true, leftOutBefore)
    }
}

/// An enrolled client: its allow-listed identity and the coordinator side of its crypto_kx session.
struct Session: Sendable {
    var identity: PublicIdentity
    var keys: SessionKeys
}

/// The round being collected, as GetRound serves it: its global model sealed once, under a fresh random round
/// key, for every process of the cohort (each receives the key sealed for one of its selected clients).
struct OpenRound: Sendable {
    var round: Int
    var attempt: Int
    var cohort: Set<String>
    var deadline: SimulatedInstant
    /// Differential privacy: the clip norm of this round (nil without DP).
    var clipNorm: Double?
    /// The key `model` is sealed under; fresh per attempt.
    var roundKey: SymmetricKey
    /// The sealed model's chunks, shared by every GetRound answer of this attempt.
    var plan: ChunkPlan
    var chunks: [Data]

    /// Seals `payload` (an encoded `GlobalModelPayload`) under a fresh round key: an envelope of kind
    /// `roundModel` for `Wire.cohortAudience`, with the attempt as its sequence number.
    init(
        round: Int, attempt: Int, cohort: Set<String>, deadline: SimulatedInstant, payload: [UInt8],
        clipNorm: Double?, chunkSize: Int, meter: PhaseMeter
    ) throws {
        self.round = round
        self.attempt = attempt
        self.cohort = cohort
        self.deadline = deadline
        self.clipNorm = clipNorm
        let key = try SymmetricKey()
        let header = EnvelopeHeader(
            kind: .roundModel, round: UInt64(round), sequence: UInt64(attempt), clientID: Wire.cohortAudience)
        let sealed = try meter.measure(.crypto) { try Envelope.seal(payload, header: header, using: key).serialized }
        let (plan, slices) = meter.measure(.codec) { Chunker.split(sealed, chunkSize: chunkSize) }
        roundKey = key
        self.plan = plan
        chunks = meter.measure(.codec) { slices.map { Data($0) } }
    }
}

typealias Machine = RoundStateMachine<SimulatedInstant>

extension CoreState {
    /// The refusal of a plain update whose sequence (its attempt) is not the open attempt of `round`: late (its
    /// attempt was abandoned while it travelled), or trained on a replayed assignment of that attempt. Nil when
    /// it is this attempt's, or `round` is not open (the round machine refuses that).
    func otherAttemptRefusal(sequence: UInt64, client: String, round: Int) -> ProtocolError? {
        guard let open, open.round == round, UInt64(open.attempt) != sequence else { return nil }
        return ProtocolError(
            code: .unexpectedMessage,
            message: "update of attempt \(sequence), round \(round) is at attempt \(open.attempt) (late, or trained "
                + "on another attempt's assignment)", client: client, round: round)
    }
}

struct CoreState: Sendable {
    var sessions: [String: Session] = [:]
    var challenges = ChallengeBook()
    var replayGuard = ReplayGuard()
    var machine: Machine
    var open: OpenRound?
    /// Round-closing actions produced inside RPC handlers, for the driver.
    var pending: [Machine.Action] = []
    var finished = false
    /// Enrolled clients whose process was answered `finished` (the coordinator stops lingering once all were).
    var toldFinished: Set<String> = []
    /// Clients one of whose messages is being received and stored (at most one each at a time).
    var receiving: Set<String> = []
    var stopping = false
    var completedRounds: Int
    var records: [RoundRecord]
    /// Differential privacy's ledger (nil when off).
    var ledger: PrivacyLedger? = nil
    /// Adaptive clipping's state (nil unless the run adapts its clip norm).
    var clipping: AdaptiveClippingState? = nil
    /// The secure-aggregation attempt in progress (nil in plain mode and between attempts).
    var secure: SecureRoundState? = nil
    var rejections = RejectionLog()
    var refusalLogBudget = RefusalLogBudget()
    var bytesReceived = 0
    var bytesSent = 0
    var sequence: UInt64 = 0
    /// Long polls taken recently (each is taken once).
    var polls = PollBook()
}

/// The coordinator's shared state between its RPC handlers and its round driver: sessions, the round machine,
/// the open round's assignment. All mutation happens under one `Mutex`; nothing here does I/O except logging.
public final class CoordinatorCore: Sendable {
    let identity: Identity
    let allowList: AllowList
    let shapes: PayloadShapes
    let logger: Logger
    let clock: ElapsedClock
    /// Microseconds since the Unix epoch: what poll stamps are checked against (`PollBook`).
    let wallClock: @Sendable () -> UInt64
    /// Random per run: lets client processes tell a re-opened round after a restart from one they handled.
    let epoch: UInt64
    let modelConfigurationJSON: String
    /// The clients' training configuration; under differential privacy its clip norm is the run's (initial) one.
    let trainingConfiguration: ClientTrainingConfiguration
    /// `trainingConfiguration` as clients read it (what a round without adaptive clipping sends).
    let trainingConfigurationJSON: String
    let foldName: String
    /// `Wire.runTermsDigest` of `modelConfigurationJSON` and `foldName`, sealed into every round's model.
    let runTerms: [UInt8]
    let chunkSize: Int
    /// CPU time per phase (crypto, codec, aggregation, ...), for `--stats` and `fedrec bench rounds`.
    public let meter = PhaseMeter()
    /// Notified whenever a round opens or closes (a closing update, a refusal that excludes a client), a
    /// secure stage completes or closes, or the coordinator finishes or stops; an accepted update that leaves
    /// the round open notifies no one.
    let changes = ChangeSignal()
    /// How secure stage inputs went out: in `SubmitUpdate` answers (`inline`, one per answer that carried them)
    /// or through `GetStage` polls (`polled`, one per poll answered with inputs).
    let stageDeliveries = Mutex((inline: 0, polled: 0))
    public var stageDeliveryCounts: (inline: Int, polled: Int) { stageDeliveries.withLock { $0 } }
    /// How round assignments went out: in `SubmitUpdate` answers to a stream's next-round request (`inline`) or
    /// through `GetRound` polls (`polled`), one per assignment sent.
    let roundDeliveries = Mutex((inline: 0, polled: 0))
    public var roundDeliveryCounts: (inline: Int, polled: Int) { roundDeliveries.withLock { $0 } }
    let state: Mutex<CoreState>
    /// Differential privacy (nil: off). Plain-mode updates are clipped to its clip norm on arrival.
    let privacy: DifferentialPrivacyConfiguration?
    /// Secure aggregation (nil: plain updates).
    let secureOptions: SecureAggregationOptions?

    init(
        identity: Identity, allowList: AllowList, shapes: PayloadShapes, logger: Logger, clock: ElapsedClock,
        modelConfigurationJSON: String, trainingConfiguration: ClientTrainingConfiguration, foldName: String,
        chunkSize: Int,
        initial: CoreState, privacy: DifferentialPrivacyConfiguration? = nil,
        secureAggregation: SecureAggregationOptions? = nil,
        wallClock: @escaping @Sendable () -> UInt64 = PollStamper.wallMicroseconds
    ) throws {
        self.wallClock = wallClock
        self.privacy = privacy
        self.secureOptions = secureAggregation
        self.identity = identity
        self.allowList = allowList
        self.shapes = shapes
        self.logger = logger
        self.clock = clock
        self.epoch = UInt64.random(in: 1...UInt64.max)
        self.modelConfigurationJSON = modelConfigurationJSON
        self.trainingConfiguration = trainingConfiguration
        self.trainingConfigurationJSON = Self.json(trainingConfiguration)
        self.foldName = foldName
        self.runTerms = try Wire.runTermsDigest(modelConfigurationJSON: modelConfigurationJSON, fold: foldName)
        self.chunkSize = chunkSize
        var initial = initial
        initial.polls = PollBook(notBefore: wallClock())
        self.state = Mutex(initial)
    }

    // MARK: Observations (tests, status)

    /// The most recent refused messages (at most `RejectionLog.capacity`).
    public var rejections: [RejectionRecord] { state.withLock { $0.rejections.recent } }
    /// How many messages were refused in all.
    public var rejectionCount: Int { state.withLock { $0.rejections.total } }
    public var enrolledClients: [String] { state.withLock { $0.sessions.keys.sorted() } }
    public var completedRounds: Int { state.withLock { $0.completedRounds } }
    public var records: [RoundRecord] { state.withLock { $0.records } }
    var isStopping: Bool { state.withLock { $0.stopping } }

    func requestStop() {
        state.withLock { $0.stopping = true }
        changes.notify()
    }

    /// Records and logs a refused message; returns it for throwing.
    @discardableResult
    func reject(_ error: ProtocolError) -> ProtocolError {
        record(code: error.code.description, client: error.client, round: error.round, message: error.message)
        return error
    }

    /// How much of a refused message's text is kept and logged (a sender chooses the ids it names).
    static let maximumRecordedMessage = 1_000

    /// `client` as recorded and logged: an allow-listed id as it is; any other (chosen by whoever sent it, of
    /// any length) as an escaped prefix with its length, so refusals cannot fill memory or the log, or forge
    /// log lines.
    func shown(_ client: String) -> String {
        allowList.contains(name: client) ? client : Self.shortened(client, to: 64)
    }

    /// `text` with control characters escaped and cut to `limit` characters (the full length said).
    static func shortened(_ text: String, to limit: Int) -> String {
        var out = ""
        var count = 0
        for character in text {
            guard count < limit else { return out + "…(\(text.utf8.count) bytes)" }
            if character.isASCII, let scalar = character.unicodeScalars.first,
                scalar.value < 0x20 || scalar.value == 0x7F
            {
                out += String(format: "\\x%02x", scalar.value)
            } else {
                out.append(character)
            }
            count += 1
        }
        return out
    }

    func record(code: String, client: String?, round: Int?, message: String) {
        let message = Self.shortened(message, to: Self.maximumRecordedMessage)
        let client = client.map(shown)
        let entry = RejectionRecord(code: code, client: client, round: round, message: message)
        let now = clock.now.offset
        let (log, leftOut) = state.withLock { s in
            s.rejections.append(entry)
            return s.refusalLogBudget.admit(at: now)
        }
        if leftOut > 0 {
            logger.warning(
                "\(leftOut) more refusal(s) in the previous \(RefusalLogBudget.window) not logged (all are counted)")
        }
        guard log else { return }
        logger.warning(
            "refused: \(message)",
            metadata: ["code": "\(code)", "client": "\(client ?? "-")", "round": "\(round.map(String.init) ?? "-")"])
    }

    // MARK: Enrolment

    /// A fresh enrolment challenge from libsodium's CSPRNG, remembered until it is used, expires, or gives way
    /// to newer ones (`ChallengeBook`).
    func newChallenge() throws -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: EnrolmentTranscript.challengeByteCount)
        let random = try SecureRandomGenerator()
        nonce.withUnsafeMutableBytes { random.fill($0) }
        let now = clock.now
        state.withLock { $0.challenges.issue(nonce, now: now.offset) }
        return nonce
    }

    /// Consumes a challenge; false when unknown, used or expired.
    func consume(challenge: [UInt8]) -> Bool {
        let now = clock.now
        return state.withLock { $0.challenges.consume(challenge, now: now.offset) }
    }

    /// Verifies `claimed`'s proof and stores its session. Throws `enrolmentRefused`.
    func enrol(claimed: PublicIdentity, challenge: [UInt8], signature: [UInt8]) throws {
        try EnrolmentTranscript.verify(
            challenge: challenge, claimed: claimed, signature: signature, coordinator: identity.publicIdentity,
            allowList: allowList)
        let keys: SessionKeys
        do {
            keys = try identity.keyAgreement.serverSessionKeys(clientPublicKey: claimed.keyAgreementKey)
        } catch let error as SecurityError {
            throw ProtocolError(code: .enrolmentRefused, message: error.message, client: claimed.name)
        }
        state.withLock { $0.sessions[claimed.name] = Session(identity: claimed, keys: keys) }
    }

    func session(of client: String) -> Session? { state.withLock { $0.sessions[client] } }

    /// Takes a long poll only when every client it names is enrolled and proved it (`PollRequest.verify`), and
    /// its stamp is fresh and not taken before (`PollBook`). A refusal is recorded and logged like any other; one
    /// naming a client that is not enrolled is `notEnrolled`, which tells the client process to enrol again.
    func authenticatePoll(_ poll: PollRequest, proofs: [Data]) throws {
        let keys = state.withLock { s in poll.clientIDs.map { s.sessions[$0]?.keys.receive } }
        do {
            try meter.measure(.crypto) { try poll.verify(proofs, keys: keys) }
            try state.withLock { try $0.polls.take(poll, now: wallClock()) }
        } catch let error as ProtocolError {
            throw reject(error)
        }
    }

    // MARK: Rounds (driver side)

    /// Opens the machine's current round with `cohort` and publishes `model` with the round's terms
    /// (`sealRound`).
    func openRound(cohort: [String], model: GlobalModelPayload, seed: UInt64) -> Machine.Action {
        let now = clock.now
        defer { changes.notify() }
        return state.withLock { s in
            let action = s.machine.openRound(cohort: cohort, now: now)
            s.bytesReceived = 0
            s.bytesSent = 0
            if case .startRound(let round, let attempt, let cohort, let deadline) = action {
                do {
                    s.open = try sealRound(
                        model, round: round, attempt: attempt, cohort: cohort, deadline: deadline, seed: seed,
                        clipping: s.clipping)
                } catch {
                    return s.machine.abandonAttempt(
                        reason: FederationError(
                            code: .tooFewUpdates, message: "cannot seal the round's model: \(error)", round: round))
                }
            }
            return action
        }
    }

    /// The open round of `model`, plain or secure: the round's terms (`seed`, what clients train with under
    /// `clipping`, the run terms) go into its plaintext, which is sealed once for the cohort.
    func sealRound(
        _ model: GlobalModelPayload, round: Int, attempt: Int, cohort: [String], deadline: SimulatedInstant,
        seed: UInt64, clipping: AdaptiveClippingState?
    ) throws -> OpenRound {
        let training = roundTraining(clipping)
        var payload = model
        payload.seed = seed
        payload.trainingConfigurationJSON = training.json
        payload.runTerms = runTerms
        return try OpenRound(
            round: round, attempt: attempt, cohort: Set(cohort), deadline: deadline,
            payload: meter.measure(.codec) { payload.encoded() }, clipNorm: training.clipNorm, chunkSize: chunkSize,
            meter: meter)
    }

    /// What a round's clients train with: the run's configuration, with the adaptive clip norm when there is
    /// one; and the round's clip norm under differential privacy.
    func roundTraining(_ clipping: AdaptiveClippingState?) -> (json: String, clipNorm: Double?) {
        guard let clipping else { return (trainingConfigurationJSON, privacy?.clipNorm) }
        var training = trainingConfiguration
        training.clipNorm = Float(clipping.clipNorm)
        return (Self.json(training), Double(training.clipNorm!))
    }

    /// A training configuration as JSON with sorted keys. Every field is a finite number (`AdaptiveClippingState`
    /// keeps its norm a finite positive Float), so encoding cannot fail.
    private static func json(_ training: ClientTrainingConfiguration) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(training), as: UTF8.self)
    }

    /// Adaptive clipping's step after a round closes (nothing without it): the noised count of the aggregated
    /// clients' unclipped bits (noise from libsodium) moves the clip norm the next round's clients use.
    func adaptClipNorm(unclippedCount: Double, participants: Int, expectedClients: Double) throws {
        guard state.withLock({ $0.clipping }) != nil else { return }
        var sampler = GaussianSampler(source: try SecureNoiseSource())
        state.withLock { s in
            _ = s.clipping?.update(
                unclippedCount: unclippedCount, participants: participants, expectedClients: expectedClients,
                sampler: &sampler)
        }
    }

    /// The next round-closing action: one produced by a handler, or the deadline's.
    func poll() -> Machine.Action? {
        let now = clock.now
        return state.withLock { s in
            if !s.pending.isEmpty {
                s.open = nil
                return s.pending.removeFirst()
            }
            guard let open = s.open, now >= open.deadline else { return nil }
            let action = s.machine.deadlineReached(now: now)
            switch action {
            case .none: return nil
            default:
                s.open = nil
                return action
            }
        }
    }

    func traffic() -> (received: Int, sent: Int) { state.withLock { ($0.bytesReceived, $0.bytesSent) } }

    func completed(_ record: RoundRecord) {
        state.withLock { s in
            s.completedRounds += 1
            s.records.append(record)
        }
    }

    func finish() {
        state.withLock { $0.finished = true }
        changes.notify()
    }

    /// Claims the one message of `client` that may be stored at a time; false while another is being received.
    func beginReceiving(from client: String) -> Bool {
        state.withLock { $0.receiving.insert(client).inserted }
    }

    func endReceiving(from client: String) {
        _ = state.withLock { $0.receiving.remove(client) }
    }

    /// Whether every enrolled client's process has been answered `finished`.
    public var everyClientToldFinished: Bool {
        state.withLock { s in s.sessions.keys.allSatisfy { s.toldFinished.contains($0) } }
    }

    /// What `state.json` needs from the core.
    func snapshot() -> (enrolled: [String], replayGuard: ReplayGuard, records: [RoundRecord], completed: Int, next: Int)
    {
        state.withLock { s in
            (
                s.sessions.values.map(\.identity.line).sorted(), s.replayGuard, s.records, s.completedRounds,
                s.machine.currentRound ?? s.completedRounds
            )
        }
    }

    // MARK: Rounds (handler side)

    enum Assignment {
        case finished(Int)
        case wait
        case round(header: Fedrec_V1_RoundHeader, chunks: [Data])
        /// There is an assignment, but its payload and header would exceed the asked bound (nothing was sealed
        /// or counted for it).
        case tooLarge
    }

    /// The assignment for a process hosting `clients`, if a round newer than (epoch, round, attempt) concerns it:
    /// the round key sealed for its first selected client, and the round's shared sealed model. `tooLarge` when
    /// the sealed model and the selected ids would exceed `maximumLength` bytes.
    func assignment(
        for clients: [String], lastEpoch: UInt64, lastRound: UInt64, lastAttempt: UInt32, maximumLength: Int = .max
    ) throws -> Assignment {
        let now = clock.now
        var tooLarge = false
        let found: (OpenRound, [String], Session, UInt64)? = state.withLock { s in
            guard clients.contains(where: { s.sessions[$0] != nil }) else { return nil }
            guard let open = s.open else { return nil }
            if lastEpoch == epoch, (UInt64(open.round), UInt32(open.attempt)) <= (lastRound, lastAttempt) { return nil }
            let selected = clients.filter { open.cohort.contains($0) && s.sessions[$0] != nil }
            guard let first = selected.first, let session = s.sessions[first] else { return nil }
            // The header's size is about its ids (each with 3 bytes of framing) and 1 KiB of fields and key.
            let headerBound = selected.reduce(1024) { $0 + $1.utf8.count + 3 }
            guard open.plan.totalLength + headerBound <= maximumLength else {
                tooLarge = true
                return nil
            }
            s.sequence += 1
            return (open, selected, session, s.sequence)
        }
        if tooLarge { return .tooLarge }
        let finished = state.withLock { s in
            guard s.finished else { return false }
            for client in clients where s.sessions[client] != nil { s.toldFinished.insert(client) }
            return true
        }
        if finished { return .finished(completedRounds) }
        if found == nil, !state.withLock({ s in clients.contains(where: { s.sessions[$0] != nil }) }) {
            throw ProtocolError(code: .notEnrolled, message: "none of the \(clients.count) client(s) is enrolled")
        }
        guard let (open, selected, session, sequence) = found else { return .wait }
        let header = EnvelopeHeader(
            kind: .roundKey, round: UInt64(open.round), sequence: sequence, clientID: selected[0])
        let sealedKey = try meter.measure(.crypto) {
            try open.roundKey.withUnsafeBytes { key in
                try Envelope.seal(key, header: header, using: session.keys.transmit).serialized
            }
        }
        state.withLock { $0.bytesSent += open.plan.totalLength + sealedKey.count }
        let remaining = max(.zero, open.deadline.offset - now.offset)
        let message = Fedrec_V1_RoundHeader.with {
            $0.round = UInt64(open.round)
            $0.attempt = UInt32(open.attempt)
            $0.selected = selected
            $0.deadlineMilliseconds = UInt64(remaining / .milliseconds(1))
            // The seed and the training configuration travel sealed inside the round's model, not here.
            $0.sealedFor = selected[0]
            $0.roundKey = Data(sealedKey)
            $0.payload = Wire.payloadInfo(open.plan)
            $0.epoch = epoch
        }
        return .round(header: message, chunks: open.chunks)
    }

    /// The open round's number, if `round` is being collected.
    func isCollecting(round: Int) -> Bool { state.withLock { $0.open?.round == round } }

    /// Opens, checks freshness, decodes and hands an update to the machine. Every refusal is recorded.
    /// What `receive` took.
    enum TakenMessage: Equatable {
        /// A plain model update.
        case update
        /// A secure-aggregation message of `stage` (1...4) of `attempt`.
        case stage(attempt: Int, stage: Int)
    }

    @discardableResult
    func receive(envelope bytes: [UInt8], client: String, round: Int) throws -> TakenMessage {
        guard let session = session(of: client) else {
            throw reject(ProtocolError(code: .notEnrolled, message: "not enrolled", client: client, round: round))
        }
        let envelope: Envelope
        var plaintext: [UInt8] = []
        let secureKinds: [MessageKind] = [.advertiseKeys, .shareKeys, .maskedInput, .unmask]
        var kind = MessageKind.modelUpdate
        // An unmask response holds other clients' shares: its plaintext is zeroed whatever becomes of it (refused
        // or parsed; the parsed shares live in SecureBytes).
        defer { if kind == .unmask { plaintext.wipe() } }
        do {
            envelope = try Envelope(serialized: bytes)
            guard envelope.header.clientID == client else {
                throw SecurityError(
                    code: .unexpectedContext,
                    message: "envelope for '\(envelope.header.clientID)' submitted as '\(client)'")
            }
            // In secure mode only stage messages are accepted, in plain mode only model updates: the kind is
            // authenticated (associated data), so a message cannot be re-labelled.
            kind =
                secureOptions != nil && secureKinds.contains(envelope.header.kind) ? envelope.header.kind : .modelUpdate
            plaintext = try meter.measure(.crypto) {
                try envelope.open(using: session.keys.receive, clientID: client, kind: kind, round: UInt64(round))
            }
            // A plain update carries its attempt as its (authenticated) sequence number: one trained on another
            // attempt's model (late, or replayed with that attempt's assignment) is not this attempt's update.
            // Checked again where the update is handed to the round machine (the attempt may move meanwhile).
            if kind == .modelUpdate,
                let refusal = state.withLock({
                    $0.otherAttemptRefusal(sequence: envelope.header.sequence, client: client, round: round)
                })
            {
                throw reject(refusal)
            }
            try state.withLock { try $0.replayGuard.accept(envelope.header) }
        } catch let error as SecurityError {
            throw reject(Wire.openingError(error, client: client, round: round))
        }
        if secureOptions != nil {
            guard kind != .modelUpdate else {
                throw reject(
                    ProtocolError(
                        code: .unexpectedMessage, message: "plain updates are refused under secure aggregation",
                        client: client, round: round))
            }
            // Stage messages carry `attempt * 8 + stage` as their (authenticated) sequence number.
            let attempt = Int(envelope.header.sequence / 8)
            try receiveSecure(kind: kind, plaintext: plaintext, client: client, round: round, attempt: attempt)
            return .stage(attempt: attempt, stage: Int(envelope.header.sequence % 8))
        }
        var update: ClientUpdate
        do {
            update = try meter.measure(.codec) { try ClientUpdatePayload.decode(plaintext, shapes: shapes) }
            // DP: the coordinator sees this update, so it enforces the clip norm itself (honest clients already
            // clipped; this bounds a dishonest one).
            if let privacy { update.clip(toNorm: Float(state.withLock { $0.open?.clipNorm } ?? privacy.clipNorm)) }
        } catch let error as ProtocolError {
            // Authenticated but unusable: the client is excluded from this round.
            let action = state.withLock { s in s.machine.clientDropped(client) }
            stash(action)
            throw reject(error.about(client: client, round: round))
        }
        let sequence = envelope.header.sequence
        let handed: Result<Machine.Action, ProtocolError> = meter.measure(.aggregation) {
            state.withLock { s in
                if let refusal = s.otherAttemptRefusal(sequence: sequence, client: client, round: round) {
                    return .failure(refusal)
                }
                s.bytesReceived += bytes.count
                return .success(s.machine.receiveUpdate(update, from: client, round: round))
            }
        }
        /// The refusal of this update when the round machine excluded it (`reason`: why, when it says).
        func invalid(_ reason: FederationError?) -> ProtocolError {
            record(
                code: reason?.code.description ?? "excluded", client: client, round: round,
                message: reason?.message ?? "excluded")
            return ProtocolError(
                code: .wrongShape, message: reason?.description ?? "excluded", client: client, round: round)
        }
        let action: Machine.Action
        switch handed {
        case .success(let taken): action = taken
        case .failure(let refusal): throw reject(refusal)
        }
        switch action {
        case .accepted(_, let received, let outstanding):
            logger.debug(
                "update accepted",
                metadata: [
                    "client": "\(client)", "round": "\(round)", "received": "\(received)",
                    "outstanding": "\(outstanding)",
                ])
            return .update
        case .rejected(let error):
            record(code: error.code.description, client: client, round: round, message: error.message)
            throw ProtocolError(code: .unexpectedMessage, message: error.description, client: client, round: round)
        case .closeRound(let result):
            stash(action)
            if result.excluded.contains(client) { throw invalid(result.rejections.last { $0.client == client }) }
            return .update
        case .retryRound(_, _, _, let rejections):
            stash(action)
            // The update that made the attempt too short to close may itself have failed validation: its reason
            // is then the attempt's last rejection (validation appends it just before closing).
            if let reason = rejections.last, reason.client == client, reason.code.isValidationFailure {
                throw invalid(reason)
            }
            return .update
        default:
            stash(action)
            return .update
        }
    }

    private func stash(_ action: Machine.Action) {
        switch action {
        case .closeRound, .retryRound, .fail: state.withLock { $0.pending.append(action) }
        default: break
        }
        changes.notify()
    }
}
