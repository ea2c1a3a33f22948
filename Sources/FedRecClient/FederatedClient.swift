import FedRecData
import FedRecFederation
import FedRecModel
public import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
public import GRPCCore
import Logging
public import ServiceLifecycle
import Synchronization

/// The clients whose messages were written to an upload stream so far, in order.
final class UploadTally: Sendable {
    let written = Mutex<[String]>([])
}

/// The messages of a `GetRound` answer as an upload's answer carried them (`SubmitResponse.next_round`), read
/// as the call's stream is.
struct InlineMessages: AsyncSequence, Sendable {
    typealias Element = Fedrec_V1_RoundMessage
    let messages: [Fedrec_V1_RoundMessage]
    init(_ messages: [Fedrec_V1_RoundMessage]) { self.messages = messages }

    struct AsyncIterator: AsyncIteratorProtocol {
        var remaining: IndexingIterator<[Fedrec_V1_RoundMessage]>
        mutating func next() async -> Fedrec_V1_RoundMessage? { remaining.next() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: messages.makeIterator()) }
}

/// One hosted user: its identity, its session with the pinned coordinator, its data.
struct VirtualClient: Sendable {
    var id: String
    var userIndex: Int
    var identity: Identity
    var keys: SessionKeys
}

/// A client process as a `Service`: enrols its virtual clients, then asks for rounds, trains each selected
/// virtual client on its own data and submits its sealed update, until the coordinator says training is over.
/// `run()` owns the gRPC connection task; a graceful shutdown stops it between calls.
public final class FederatedClient<Transport: ClientTransport>: Service {
    let grpc: GRPCClient<Transport>
    let options: ClientOptions
    let dataset: Dataset
    let clients: [String: VirtualClient]
    let order: [String]
    let coordinator: PublicIdentity
    let logger: Logger
    let clock: any Clock<Duration>
    let stopping = Mutex(false)
    /// Called with (round, selected count) when an assignment arrives (progress, tests).
    let onAssignment: (@Sendable (Int, Int) -> Void)?
    /// Updates this process submitted and the coordinator accepted.
    let accepted = Mutex(0)
    /// CPU time per phase (training, crypto, codec), for `--stats` and `fedrec bench rounds`.
    public let meter = PhaseMeter()
    /// Stamps this process's polls (strictly increasing, so the coordinator takes each once).
    let stamper = PollStamper()
    public var acceptedUpdates: Int { accepted.withLock { $0 } }

    init(
        grpc: GRPCClient<Transport>, options: ClientOptions, dataset: Dataset, clients: [VirtualClient],
        coordinator: PublicIdentity, logger: Logger, clock: any Clock<Duration>,
        onAssignment: (@Sendable (Int, Int) -> Void)?
    ) {
        self.grpc = grpc
        self.options = options
        self.dataset = dataset
        self.order = clients.map(\.id)
        self.clients = Dictionary(uniqueKeysWithValues: clients.map { ($0.id, $0) })
        self.coordinator = coordinator
        self.logger = logger
        self.clock = clock
        self.onAssignment = onAssignment
    }

    public var clientIDs: [String] { order }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await self.grpc.runConnections() }
                do {
                    // A signal cancels whatever the loop awaits (a poll, an upload a silent coordinator never
                    // reads), so the process stops promptly instead of waiting for a call that may never end.
                    try await cancelWhenGracefulShutdown { try await self.loop() }
                } catch {
                    self.grpc.beginGracefulShutdown()
                    throw error
                }
                self.grpc.beginGracefulShutdown()
            }
        } onGracefulShutdown: {
            self.stopping.withLock { $0 = true }
        }
    }

    var isStopping: Bool { stopping.withLock { $0 } }

    /// Long polls (`GetRound`, `GetStage`) end by the coordinator's answer within the poll time; a coordinator
    /// that never answers is cut off 30 s later, and the call counts as failed (unreachable, retried).
    var pollCallOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = .milliseconds(self.options.pollMilliseconds) + .seconds(30)
        return options
    }

    /// The proofs of `poll`, one per client it names, each with that client's session key.
    func pollProofs(_ poll: PollRequest) throws -> [Data] {
        let keys = try poll.clientIDs.map { id in
            guard let client = clients[id] else {
                throw ClientError(code: .setup, message: "a poll names '\(id)', which this process does not host")
            }
            return client.keys.transmit
        }
        return try meter.measure(.crypto) { try poll.proofs(keys: keys) }
    }

    /// The `GetRound` poll for this process's enrolled clients, asking for an assignment newer than `last`
    /// (epoch, round, attempt), stamped and proved for `call`: a `GetRound` call, or (`.nextRound`) the end of an
    /// upload stream.
    func roundRequest(
        run: RunSettings, after last: (epoch: UInt64, round: UInt64, attempt: UInt32), call: PollRequest.Call
    ) throws -> Fedrec_V1_RoundRequest {
        var request = Fedrec_V1_RoundRequest.with {
            $0.clientIds = run.enrolled
            $0.waitMilliseconds = UInt32(options.pollMilliseconds)
            $0.lastEpoch = last.epoch
            $0.lastRound = last.round
            $0.lastAttempt = last.attempt
            $0.stamp = stamper.next()
        }
        request.proofs = try pollProofs(PollRequest(request, call: call))
        return request
    }

    /// Runs a poll call. A coordinator that refuses the poll's proofs will refuse every poll of this process
    /// (session keys are fixed by the identities), so that ends the process (exit 4) with its reason. A stamp
    /// refused as too far from the coordinator's clock (`outOfRange`) is left to the loop, which retries it like
    /// an unreachable coordinator (a clock may be stepped back into line) and ends the process (exit 4) only when
    /// it lasts `--connect-timeout`.
    func refusingPoll<Answer>(_ call: () async throws -> Answer) async throws -> Answer {
        do {
            return try await call()
        } catch let error as RPCError where error.code == .unauthenticated {
            throw ClientError(
                code: .enrolmentRefused, message: "the coordinator refuses this process's polls: \(error.message)")
        }
    }

    /// This host's clock as a poll stamps it, for a refusal message.
    static func clockLine() -> String {
        "\(Date(timeIntervalSince1970: Double(PollStamper.wallMicroseconds()) / 1e6)) UTC"
    }

    /// Run-wide settings learnt at enrolment.
    struct RunSettings {
        /// The hosted clients the coordinator enrolled, in hosting order: the only ones a poll names (the
        /// coordinator refuses a poll naming a client it does not know).
        var enrolled: [String]
        /// `Wire.runTermsDigest` of the enrol answer's model configuration and fold, as received.
        var runTerms: [UInt8]
        var configuration: TwoTowerConfiguration
        var shapes: PayloadShapes
        var users: [Int: FoldUser]
        var userFeatures: SparseMatrix?
    }

    private func loop() async throws {
        let service = Fedrec_V1_Coordinator.Client(wrapping: grpc)
        var settings: RunSettings? = nil
        var last: (epoch: UInt64, round: UInt64, attempt: UInt32) = (0, 0, 0)
        var trainer: ClientTrainer? = nil
        // The assignment that last failed to open, and how many times in a row.
        var unopened: (key: (UInt64, UInt64, UInt32), count: Int) = ((0, 0, 0), 0)
        var unreachableSince: Duration? = nil
        // Since when every answer has been refused as malformed (nil after one that was not).
        var malformedSince: Duration? = nil
        // The next assignment as the last upload's answer carried it (empty: poll GetRound).
        var inline: [Fedrec_V1_RoundMessage] = []
        let started = ContinuousClock.now

        while !isStopping && !Task.isCancelled {
            do {
                if settings == nil { settings = try await enrol(service) }
                guard let run = settings else { continue }
                let answer: Answer
                let asked = ContinuousClock.now
                if !inline.isEmpty {
                    // The last upload's answer carried the next assignment: no GetRound call (a `wait` there was
                    // an empty answer, and polls below).
                    let messages = inline
                    inline = []
                    answer = try await Self.readAssignment(
                        InlineMessages(messages), chunkSize: options.chunkSize, shapes: run.shapes)
                } else {
                    let request = try roundRequest(run: run, after: last, call: .getRound)
                    answer = try await refusingPoll {
                        try await service.getRound(request, options: pollCallOptions) { response in
                            try await Self.readAssignment(
                                response.messages, chunkSize: self.options.chunkSize, shapes: run.shapes)
                        }
                    }
                }
                unreachableSince = nil
                malformedSince = nil
                switch answer {
                case .finished(let rounds):
                    logger.info("training finished after \(rounds) round(s)")
                    return
                case .wait:
                    // A wait answered at once (a coordinator shutting down, a stream closed empty) must not turn
                    // this loop into a busy poll.
                    if Self.answeredAtOnce(since: asked, pollMilliseconds: options.pollMilliseconds) {
                        try await pause(.milliseconds(250))
                    }
                    continue
                case .round(let header, let sealed):
                    meter.beginMeasuring()
                    let received = ContinuousClock.now
                    // An assignment that does not open is asked for again (it may have been damaged on the
                    // way), after a pause, up to three times; then its attempt is given up (the process polls for
                    // the next one). One that opens is this process's round, whatever comes of it.
                    let key = (header.epoch, header.round, header.attempt)
                    guard let global = try openAssignment(header: header, sealed: sealed, run: run) else {
                        unopened = unopened.key == key ? (key, unopened.count + 1) : (key, 1)
                        if unopened.count >= Self.openingTries {
                            logger.error(
                                """
                                round \(header.round) attempt \(header.attempt): the assignment did not open \
                                \(Self.openingTries) times; waiting for the next one
                                """)
                            last = key
                        } else {
                            try await pause(.milliseconds(250))
                        }
                        continue
                    }
                    last = key
                    inline = try await handle(
                        header: header, global: global, received: received, run: run, trainer: &trainer,
                        service: service)
                }
            } catch _ where isStopping || Task.isCancelled {
                break  // a call cut short by the shutdown
            } catch let error as RPCError where error.code == .permissionDenied {
                logger.warning("coordinator does not know these clients (\(error.message)): enrolling again")
                settings = nil
                try await pause(.milliseconds(200))
            } catch let error as RPCError {
                let now = ContinuousClock.now - started
                let since = unreachableSince ?? now
                let clockRefused = error.code == .outOfRange  // a poll stamped too far from the coordinator's clock
                if clockRefused && unreachableSince == nil {
                    logger.warning(
                        """
                        the coordinator refuses this process's poll stamps (\(error.message)); retrying for up to \
                        \(options.connectTimeout)
                        """)
                }
                unreachableSince = since
                if now - since > options.connectTimeout {
                    guard clockRefused else {
                        throw ClientError(
                            code: .unreachable,
                            message: Self.unreachableMessage(
                                error, host: options.coordinatorHost, port: options.coordinatorPort,
                                after: options.connectTimeout))
                    }
                    throw ClientError(
                        code: .enrolmentRefused,
                        message: "the coordinator refused this process's polls for \(options.connectTimeout): "
                            + "\(error.message) (this host's clock is \(Self.clockLine()); set the wrong clock)")
                }
                logger.debug("coordinator call failed (\(error.code)): retrying")
                try await pause(.milliseconds(250))
            } catch let error as ProtocolError {
                // A malformed answer (bad chunking, an oversized payload, a stage input in a round stream) is
                // the coordinator's fault or an attacker's on the path: log it and poll again.
                logger.error("coordinator answer refused: \(error)")
                // The coordinator sends the same assignment to every poll: one that is always malformed would be
                // refused forever. After --connect-timeout of nothing else the process stops, as when the
                // coordinator is unreachable.
                let now = ContinuousClock.now - started
                let since = malformedSince ?? now
                malformedSince = since
                if now - since > options.connectTimeout {
                    throw ClientError(
                        code: .unreachable,
                        message: "every answer of the coordinator for \(options.connectTimeout) was malformed: \(error)"
                    )
                }
                try await pause(.milliseconds(250))
            }
        }
        throw ClientError(code: .interrupted, message: "stopped by a signal before training finished")
    }

    /// Why the process gave up on its coordinator, in words first (the gRPC status, which names the transport's
    /// state, follows in parentheses for diagnosis).
    static func unreachableMessage(_ error: RPCError, host: String, port: Int, after timeout: Duration) -> String {
        let address = "\(host):\(port)"
        let span = "for \(timeout.seconds.formatted(.number.precision(.fractionLength(0...3)))) s (--connect-timeout)"
        let what: String
        switch error.code {
        case .unavailable:
            what = "no coordinator answered at \(address) \(span): is it running, and listening on that address?"
        case .deadlineExceeded:
            what = "the coordinator at \(address) did not answer in time \(span)"
        default:
            what = "every call to the coordinator at \(address) failed \(span)"
        }
        return what + " (gRPC \(error.code): \(error.message))"
    }

    /// Sleeps before a retry; a shutdown (the flag, or the loop's cancellation) cuts it short without an error,
    /// and the loop then ends as interrupted.
    func pause(_ duration: Duration) async throws {
        if !isStopping { try? await clock.sleep(for: duration) }
    }

    enum Answer: Sendable {
        case finished(Int)
        case wait
        case round(Fedrec_V1_RoundHeader, [UInt8])
    }

    /// Whether a poll's `wait` came back in under half the wait it asked for (the coordinator holds a poll up to
    /// 5 s): then the caller pauses before polling again.
    static func answeredAtOnce(since asked: ContinuousClock.Instant, pollMilliseconds: Int) -> Bool {
        ContinuousClock.now - asked < .milliseconds(min(pollMilliseconds, 5_000) / 2)
    }

    /// How many times in a row an assignment may fail to open before its attempt is given up.
    static var openingTries: Int { 3 }

    /// The largest sealed assignment read: the model of the enrolled shapes plus 1 MiB and the largest secure
    /// section, and at least 256 MiB, so that a model of other shapes than an altered enrol answer implies still reaches
    /// the run-terms check (which stops the process) instead of being refused as oversized every round. The
    /// assembler's memory grows with what arrives, not with the announced length.
    static func maximumAssignmentBytes(_ shapes: PayloadShapes) -> Int {
        max(shapes.globalModelByteCount + (1 << 20) + secureSectionBytes, 256 << 20)
    }

    /// The most a secure round's section can add: 64 KiB of terms and, per participant, an id of up to 64 bytes
    /// with its identity key and framing (33 bytes).
    static var secureSectionBytes: Int { (64 << 10) + 97 * SecureAggregationParameters.maximumParticipantCount }

    /// The largest global model a client process accepts (2 GiB a round: far above any full-softmax model, whose
    /// catalogue stays under the sampled-softmax threshold).
    static var maximumModelBytes: Int { 2 << 30 }

    /// Reads a `GetRound` answer (or the same messages as an upload's answer carried them): the assignment, a
    /// wait, or that training finished.
    static func readAssignment<Messages: AsyncSequence>(
        _ messages: Messages, chunkSize: Int, shapes: PayloadShapes
    ) async throws -> Answer where Messages.Element == Fedrec_V1_RoundMessage {
        var iterator = messages.makeAsyncIterator()
        guard let first = try await iterator.next() else { return .wait }
        switch first.part {
        case .finished(let f): return .finished(Int(clamping: f.completedRounds))
        case .wait, .none, .aborted: return .wait
        case .stageHeader: throw ProtocolError(code: .malformedChunk, message: "a stage input in a round stream")
        case .data: throw ProtocolError(code: .malformedChunk, message: "assignment without a header")
        case .header(let header):
            var assembler = try ChunkAssembler(
                plan: Wire.plan(header.payload), chunkSize: chunkSize,
                maximumLength: maximumAssignmentBytes(shapes)
            )
            while !assembler.isComplete {
                guard let next = try await iterator.next() else { break }
                guard case .data(let chunk)? = next.part else {
                    throw ProtocolError(code: .malformedChunk, message: "expected a data chunk")
                }
                try assembler.append(index: Int(chunk.index), chunk.data)
            }
            return .round(header, try assembler.finish())
        }
    }

    /// Enrolment calls end within the connect timeout (a challenge within 10 s of it): a coordinator that
    /// accepts the connection but never answers is then retried and, past `connectTimeout`, unreachable.
    private func enrolmentCallOptions(_ limit: Duration) -> CallOptions {
        var callOptions = CallOptions.defaults
        callOptions.timeout = min(limit, options.connectTimeout)
        return callOptions
    }

    private func enrol(_ service: Fedrec_V1_Coordinator.Client<Transport>) async throws -> RunSettings {
        let challenge = try await service.getChallenge(.init(), options: enrolmentCallOptions(.seconds(10)))
        guard challenge.coordinatorIdentity == coordinator.line else {
            throw ClientError(
                code: .coordinatorMismatch,
                message: "the coordinator presents '\(challenge.coordinatorIdentity)', pinned '\(coordinator.line)'")
        }
        let nonce = Array(challenge.nonce)
        var proofs: [Fedrec_V1_ClientProof] = []
        for id in order {
            let client = clients[id]!
            let signature = try EnrolmentTranscript.sign(
                challenge: nonce, identity: client.identity, coordinator: coordinator)
            proofs.append(
                .with {
                    $0.clientID = id
                    $0.ed25519PublicKey = Data(client.identity.signing.publicKey.rawRepresentation)
                    $0.x25519PublicKey = Data(client.identity.keyAgreement.publicKey.rawRepresentation)
                    $0.signature = Data(signature)
                })
        }
        let response = try await service.enrol(
            .with {
                $0.challenge = Data(nonce)
                $0.clients = proofs
            }, options: enrolmentCallOptions(options.connectTimeout))
        guard response.coordinatorIdentity == coordinator.line else {
            throw ClientError(
                code: .coordinatorMismatch, message: "the coordinator's identity changed during enrolment")
        }
        for rejection in response.rejected {
            logger.error(
                "enrolment refused",
                metadata: [
                    "client": "\(rejection.clientID)", "code": "\(rejection.code)", "reason": "\(rejection.message)",
                ])
        }
        // The coordinator answers every proof it is sent, accepting or refusing it; the lists travel in the clear,
        // so one that leaves a hosted client out (or names only others) was altered or is faulty.
        let accepted = Set(response.accepted)
        let refused = Set(response.rejected.map(\.clientID))
        let enrolled = order.filter(accepted.contains)
        let unanswered = order.filter { !accepted.contains($0) && !refused.contains($0) }
        if let first = unanswered.first {
            throw ClientError(
                code: .coordinatorMismatch,
                message: "the enrol answer neither accepts nor refuses \(unanswered.count) of this process's "
                    + "\(order.count) client(s) (first: '\(first)'): it was altered on the way, or the coordinator is "
                    + "faulty")
        }
        guard !enrolled.isEmpty else {
            throw ClientError(
                code: .enrolmentRefused, message: "the coordinator accepted none of the \(order.count) client(s)")
        }
        guard
            let configuration = try? JSONDecoder().decode(
                TwoTowerConfiguration.self, from: Data(response.modelConfigurationJson.utf8)),
            let fold = Fold(rawValue: response.fold),
            configuration.itemCount == dataset.itemIDs.count
        else {
            throw ClientError(code: .setup, message: "the coordinator's model does not fit this data set")
        }
        // The JSON skipped the configuration's own checks: a bad one is refused here, not trapped on in training.
        let userFeatureCount = dataset.userFeatures.columns
        if let problem = configuration.problem {
            throw ClientError(code: .setup, message: "the coordinator's model configuration is invalid: \(problem)")
        }
        guard configuration.userFeatureCount == 0 || configuration.userFeatureCount == userFeatureCount else {
            throw ClientError(
                code: .setup,
                message: "the coordinator's model takes \(configuration.userFeatureCount) user features, this data set "
                    + "has \(userFeatureCount)")
        }
        guard !configuration.usesSampledSoftmax else {
            throw ClientError(
                code: .setup,
                message: "the coordinator's model trains with sampled softmax, which federated clients do not "
                    + "(catalogue of \(configuration.itemCount), threshold \(configuration.sampledSoftmaxThreshold))")
        }
        let layout = ParameterLayout.userTower(configuration)
        let shapes = PayloadShapes(
            userTowerCount: layout.count, itemRows: configuration.itemCount, dimension: configuration.dimension)
        // The enrol answer is authenticated only by the first sealed model; until then it bounds what this process
        // buffers, so shapes no model of fedrec's limits can have are refused here.
        guard shapes.globalModelByteCount <= Self.maximumModelBytes else {
            throw ClientError(
                code: .setup,
                message: "the coordinator's model would be \(shapes.globalModelByteCount) bytes a round (catalogue "
                    + "\(configuration.itemCount), d \(configuration.dimension), width \(configuration.hiddenWidth)); "
                    + "a client takes at most \(Self.maximumModelBytes)")
        }
        var users: [Int: FoldUser] = [:]
        for user in dataset.split.fold(fold) { users[user.userIndex] = user }
        logger.info("enrolled \(enrolled.count) of \(order.count) client(s)")
        return RunSettings(
            enrolled: enrolled,
            runTerms: try Wire.runTermsDigest(
                modelConfigurationJSON: response.modelConfigurationJson, fold: response.fold),
            configuration: configuration,
            shapes: shapes, users: users, userFeatures: configuration.userFeatureCount == 0 ? nil : dataset.userFeatures
        )
    }

    /// Opens an assignment: the round key sealed for one of this process's clients, the model under it, the
    /// model's attempt and run terms checked against the header and the enrol answer. Nil (logged) when it
    /// cannot be opened or decoded; throws when the run terms show the enrol answer was altered.
    private func openAssignment(header: Fedrec_V1_RoundHeader, sealed: [UInt8], run: RunSettings) throws
        -> GlobalModelPayload?
    {
        let round = Int(clamping: header.round)
        guard let opener = clients[header.sealedFor] else {
            logger.warning("assignment sealed for a client this process does not host", metadata: ["round": "\(round)"])
            return nil
        }
        let plaintext: [UInt8]
        do {
            plaintext = try meter.measure(.crypto) {
                let roundKey = try SymmetricKey(
                    Envelope(serialized: Array(header.roundKey)).openSecret(
                        using: opener.keys.receive, clientID: opener.id, kind: .roundKey, round: header.round))
                let model = try Envelope(serialized: sealed)
                guard model.header.sequence == UInt64(header.attempt) else {
                    throw ProtocolError(
                        code: .unexpectedMessage,
                        message:
                            "round model of attempt \(model.header.sequence), the header announced \(header.attempt)")
                }
                return try model.open(
                    using: roundKey, clientID: Wire.cohortAudience, kind: .roundModel, round: header.round)
            }
        } catch {
            logger.error("round assignment refused: \(error)", metadata: ["round": "\(round)"])
            return nil
        }
        // The enrol answer travelled in the clear; the sealed model says what it should have been. Compared
        // before the shapes: an altered configuration gives the model other shapes, which would otherwise only be
        // refused, round after round. (A payload that decodes has its terms where this reading finds them, so
        // nothing is compared again after decoding.)
        if let terms = GlobalModelPayload.runTerms(in: plaintext), terms != run.runTerms {
            throw ClientError(
                code: .coordinatorMismatch,
                message: "the model configuration or fold received at enrolment differs from the one the coordinator "
                    + "sealed into round \(round): the enrol answer was altered on the way")
        }
        do {
            return try meter.measure(.codec) {
                try GlobalModelPayload(decoding: plaintext, shapes: run.shapes, round: round)
            }
        } catch {
            logger.error("round assignment refused: \(error)", metadata: ["round": "\(round)"])
            return nil
        }
    }

    private func handle(
        header: Fedrec_V1_RoundHeader, global: GlobalModelPayload, received: ContinuousClock.Instant,
        run: RunSettings, trainer: inout ClientTrainer?, service: Fedrec_V1_Coordinator.Client<Transport>
    ) async throws -> [Fedrec_V1_RoundMessage] {
        let deadline = received + .milliseconds(Int64(clamping: header.deadlineMilliseconds))
        let round = Int(clamping: header.round)
        let attempt = Int(header.attempt)
        let selected = header.selected.filter { clients[$0] != nil }
        onAssignment?(round, selected.count)
        logger.info("round \(round): \(selected.count) client(s) selected")
        if let hang = options.hangInRound, hang == round {
            logger.warning("test hook: hanging in round \(round)")
            while !isStopping { try await clock.sleep(for: .milliseconds(50)) }
            return []
        }
        guard
            let training = try? JSONDecoder().decode(
                ClientTrainingConfiguration.self, from: Data(global.trainingConfigurationJSON.utf8))
        else {
            logger.error("unreadable training configuration", metadata: ["round": "\(round)"])
            return []
        }
        if let problem = training.problem {
            logger.error("invalid training configuration: \(problem)", metadata: ["round": "\(round)"])
            return []
        }
        // The configuration may change between rounds (adaptive clipping's norm); the trainer keeps its buffers.
        if trainer == nil {
            trainer = ClientTrainer(configuration: training)
        } else {
            trainer!.configuration = training
        }
        let tower = UserTower(configuration: run.configuration, flattened: global.userTower)
        /// One virtual client's local training on the round's model (nil: no examples in this fold).
        func train(_ client: VirtualClient) -> ClientUpdate? {
            guard let user = run.users[client.userIndex], !user.known.isEmpty else { return nil }
            let update = meter.measure(.training) {
                trainer!.train(
                    globalUserTower: tower, itemEmbeddings: global.itemEmbeddings, user: user,
                    userFeatures: run.userFeatures,
                    seed: SplitMix64.stream(seed: global.seed, index: UInt64(client.userIndex)).state)
            }
            // Diverged local training is not sent: the coordinator would refuse it, and in a secure round the
            // client would drop out only at stage 3, after its keys and shares were in.
            guard update.isFinite else {
                logger.error(
                    "local training diverged (a non-finite update): not sent",
                    metadata: ["client": "\(client.id)", "round": "\(header.round)"])
                return nil
            }
            return update
        }
        // The round's last upload asks for the next assignment too: its answer carries it when it comes in time.
        let next = { [self] in
            try roundRequest(run: run, after: (header.epoch, header.round, header.attempt), call: .nextRound)
        }
        if let secure = global.secure {
            return try await participateSecurely(
                secure, header: header, deadline: deadline, selected: selected, shapes: run.shapes, train: train,
                nextRound: next, service: service)
        }
        // Training runs one client after another (one trainer, one core's worth of BLAS); each update is sealed
        // as soon as it is trained and sent while the next client trains, all through one call.
        let (taken, response) = try await submitInOneCall(
            selected, round: round, what: "update", sampleMemory: true, deadline: deadline, nextRound: next,
            service: service
        ) { id in
            guard ContinuousClock.now < deadline else {
                logger.warning("deadline passed: skipping", metadata: ["client": "\(id)", "round": "\(round)"])
                return nil
            }
            let client = clients[id]!
            guard let update = train(client) else { return nil }
            let messages = try sealedMessages(
                update, from: client, round: round, attempt: attempt, precision: global.precision)
            return (id, messages)
        }
        accepted.withLock { $0 += taken.count }
        return response?.nextRound ?? []
    }

    /// Sends hosted clients' sealed messages of one round through one `SubmitUpdate` call (a call costs about as
    /// much CPU as half a megabyte of payload): `prepare` turns each item into one client's messages, or nil to
    /// skip it, and each is written while the next is prepared. At most `uploadsInFlight` prepared messages wait
    /// to be written, which bounds their memory. The call starts with the first message (nothing to send, no
    /// call) and memory is sampled then when `sampleMemory` (the round's fullest moment). `nextRound`, when
    /// given, makes the next-round request that ends the stream (a `RoundRequest` proved for `.nextRound`, made
    /// once the last message is prepared, so its stamp is fresh). Returns the clients whose messages the
    /// coordinator took, and its answer when it took them all (for a secure stage, it may carry the next stage's
    /// inputs; with `nextRound`, the next assignment); refusals are logged, not thrown.
    func submitInOneCall<Item>(
        _ items: [Item], round: Int, what: String, sampleMemory: Bool, deadline: ContinuousClock.Instant,
        stageDeadline: Duration = .zero, nextRound: (() throws -> Fedrec_V1_RoundRequest)? = nil,
        service: Fedrec_V1_Coordinator.Client<Transport>,
        prepare: (Item) async throws -> (client: String, messages: [Fedrec_V1_UpdateMessage])?
    ) async throws -> (taken: [String], response: Fedrec_V1_SubmitResponse?) {
        // Each element: one client's messages, or (client nil) the closing next-round request.
        let (uploads, feed) = AsyncStream.makeStream(of: (String?, [Fedrec_V1_UpdateMessage]).self)
        let (written, writtenFeed) = AsyncStream.makeStream(of: Void.self)
        let uploadsInFlight = max(1, options.uploadsInFlight)
        return try await withThrowingTaskGroup(of: ([String], Fedrec_V1_SubmitResponse?).self) { group in
            var acknowledgements = written.makeAsyncIterator()
            var pending = 0
            var uploading = false
            for item in items {
                guard !isStopping else { break }
                guard let (client, messages) = try await prepare(item) else { continue }
                if pending == uploadsInFlight {
                    // Nil: the upload stream ended early (refused or cut); the rest is not sent.
                    guard await acknowledgements.next() != nil else { break }
                    pending -= 1
                }
                feed.yield((client, messages))
                pending += 1
                if !uploading {
                    let callOptions = Self.uploadCallOptions(deadline: deadline, now: .now, stage: stageDeadline)
                    group.addTask {
                        await self.upload(
                            uploads, acknowledging: writtenFeed, round: round, what: what, options: callOptions,
                            service: service)
                    }
                    uploading = true
                    if sampleMemory { meter.sampleMemory() }
                }
            }
            if uploading, let nextRound, !isStopping {
                let request = try nextRound()
                feed.yield((nil, [.with { $0.nextRound = request }]))
            }
            feed.finish()
            return try await group.next() ?? ([], nil)
        }
    }

    /// How long an upload call may last past the round's deadline: the coordinator cuts its own end of a call
    /// after its longest deadline plus a second, so only a coordinator that stopped reading (no flow-control
    /// window, no answer) while still answering pings keeps a call this long.
    static var uploadGrace: Duration { .seconds(60) }

    /// A `SubmitUpdate` call started at `now` ends, at the latest, `stage + uploadGrace` after `deadline` (the
    /// round's, as its header gave it) or after `now`, whichever is later: a plain call is open while the hosted
    /// clients train, so it may last until the deadline; a secure stage's call (`stage`: the stage deadline) may
    /// be collected for that long after it starts.
    static func uploadCallOptions(
        deadline: ContinuousClock.Instant, now: ContinuousClock.Instant, stage: Duration = .zero
    ) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = max(.zero, deadline - now) + stage + uploadGrace
        return options
    }

    /// Writes the sealed messages, as they come, into one `SubmitUpdate` call, acknowledging each once written;
    /// returns the clients whose messages were taken (`Wire.takenClients` when the call failed) and the answer
    /// when it did not fail.
    private func upload(
        _ uploads: AsyncStream<(String?, [Fedrec_V1_UpdateMessage])>,
        acknowledging written: AsyncStream<Void>.Continuation, round: Int, what: String, options: CallOptions,
        service: Fedrec_V1_Coordinator.Client<Transport>
    ) async -> ([String], Fedrec_V1_SubmitResponse?) {
        defer { written.finish() }
        let sent = UploadTally()
        do {
            let response = try await service.submitUpdate(
                options: options,
                requestProducer: { writer in
                    for await (client, messages) in uploads {
                        try await writer.write(contentsOf: messages)
                        guard let client else { continue }  // the closing next-round request
                        sent.written.withLock { $0.append(client) }
                        written.yield()
                    }
                })
            return (sent.written.withLock { $0 }, response)
        } catch _ where isStopping || Task.isCancelled {
            // A shutdown cut the call short, most often while the coordinator held its answer for the next round:
            // nothing was refused, and whether the messages were taken is unknown (none is counted).
            logger.debug("\(what) upload ended by the shutdown", metadata: ["round": "\(round)"])
            return ([], nil)
        } catch let error as RPCError {
            // The coordinator's refusals always say how many messages it took; a failure without that count is the
            // call breaking off (the coordinator stopped or the connection dropped, most often while the answer was
            // held for the next round), which refused nothing.
            guard error.metadata[stringValues: Wire.acceptedMetadataKey].contains(where: { _ in true }) else {
                logger.warning(
                    "\(what) upload broke off before the coordinator answered (gRPC \(error.code): \(error.message))",
                    metadata: ["round": "\(round)"])
                return ([], nil)
            }
            logger.warning("\(what)(s) refused: \(error.message)", metadata: ["round": "\(round)"])
            return (Wire.takenClients(written: sent.written.withLock { $0 }, failure: error.metadata), nil)
        } catch {
            logger.warning("\(what) upload failed: \(error)", metadata: ["round": "\(round)"])
            return ([], nil)
        }
    }

    /// One client's update as `SubmitUpdate` messages: encoded, sealed for the coordinator, chunked.
    private func sealedMessages(
        _ update: ClientUpdate, from client: VirtualClient, round: Int, attempt: Int, precision: WirePrecision
    ) throws -> [Fedrec_V1_UpdateMessage] {
        let plaintext = meter.measure(.codec) { ClientUpdatePayload.encode(update, precision: precision) }
        let envelope = try meter.measure(.crypto) {
            try Envelope.seal(
                plaintext,
                header: EnvelopeHeader(
                    kind: .modelUpdate, round: UInt64(round), sequence: UInt64(attempt), clientID: client.id),
                using: client.keys.transmit
            ).serialized
        }
        return try meter.measure(.codec) {
            try Wire.updateMessages(
                envelope: envelope, clientID: client.id, round: round, attempt: attempt,
                proofKey: client.keys.transmit, chunkSize: options.chunkSize)
        }
    }
}
