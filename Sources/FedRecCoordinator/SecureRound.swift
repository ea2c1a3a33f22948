import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
import GRPCCore
import Logging

/// One secure-aggregation attempt as the coordinator sees it: the SecAgg+ server machine, the stage being
/// collected with its deadline, and the stage outputs the clients fetch (`GetStage`). Lives in `CoreState`,
/// under the core's mutex.
struct SecureRoundState: Sendable {
    let round: Int
    let attempt: Int
    var server: SecureAggregationServer
    /// Client id -> participant index.
    let index: [String: Int]
    let participants: [String]
    let weighting: AggregationWeighting
    /// Adaptive clipping: every input ends with the client's unclipped bit, scaled to the clip range.
    let reportsClipping: Bool
    let shapes: PayloadShapes
    let stageTimeout: Duration
    /// The stage being collected; nil once the attempt finished or was abandoned.
    var collecting: SecureAggregationStage? = .advertiseKeys
    var deadline: SimulatedInstant
    /// Who is expected to send in the stage being collected, and who did.
    var expected: Set<Int>
    var received: Set<Int> = []
    /// Stage outputs, serialized (sealed per client when fetched).
    var roster: [UInt8]? = nil
    var inboxes: [Int: [UInt8]] = [:]
    var unmaskRequest: [UInt8]? = nil
    var aborted: String? = nil
}

/// What the driver learns from a secure step.
enum SecureStep {
    /// The attempt ended with an aggregate: feed it to the round machine.
    case aggregate(SecureAggregate, SecureRoundState)
    /// The attempt cannot complete.
    case aborted(String)
}

extension CoordinatorCore {
    var secureAggregation: SecureAggregationOptions? { secureOptions }

    /// Opens a secure attempt of the machine's current round: the assignment carries the SecAgg+ parameters.
    func openSecureRound(
        cohort: [String], seed: UInt64, model: (_ round: Int) -> GlobalModelPayload, options: SecureAggregationOptions,
        deadline roundDeadline: Duration, weighting: AggregationWeighting
    ) -> Machine.Action {
        let now = clock.now
        defer { changes.notify() }
        return state.withLock { s in
            guard let round = s.machine.currentRound, let attempt = s.machine.currentAttempt else {
                return .fail(FederationError(code: .retriesExhausted, message: "the round machine has failed"))
            }
            let keys = cohort.compactMap { s.sessions[$0]?.identity.signingKey }
            let reportsClipping = s.clipping != nil
            let vectorLength = SecureInput.length(shapes, reportsClipping: reportsClipping)
            // The neighbourhood graph is drawn from libsodium per attempt, not from --seed: Bell et al.'s collusion
            // bound assumes colluders cannot know their place in it in advance (it is public once drawn).
            // A libsodium that cannot start leaves nothing secure to run, so the run fails rather than fall back
            // to a predictable graph.
            var generator: SecureRandomGenerator
            do { generator = try SecureRandomGenerator() } catch {
                return .fail(
                    FederationError(
                        code: .retriesExhausted,
                        message: "cannot draw round \(round)'s neighbourhood graph from libsodium: \(error)",
                        round: round))
            }
            let graphSeed = generator.next()
            let clipRange = Self.quantiserRange(configured: options.clipRange, adaptiveClipNorm: s.clipping?.clipNorm)
            var parameters = SecureAggregationParameters(
                round: UInt64(round), participants: cohort, vectorLength: vectorLength,
                clipRange: clipRange, maximumWeight: weighting == .examples ? options.maximumWeight ?? 1 : 1,
                graphSeed: graphSeed, neighbourCount: options.neighbours.map { min($0, max(cohort.count - 1, 1)) },
                threshold: options.threshold)
            // A cohort too small for the requested graph falls back to the complete graph (classic SecAgg), with
            // the requested threshold when it fits as asked (k/2 < t < k: it still tolerates a dropout), else the
            // default (a t capped to k = n - 1 would abort the attempt at any dropout).
            if (try? parameters.validate()) == nil, cohort.count >= 2 {
                let k = cohort.count - 1
                let asked = options.threshold.flatMap { 2 * $0 > k && $0 < k ? $0 : nil }
                parameters = SecureAggregationParameters(
                    round: UInt64(round), participants: cohort, vectorLength: vectorLength,
                    clipRange: clipRange, maximumWeight: parameters.maximumWeight, graphSeed: graphSeed,
                    neighbourCount: k, threshold: asked)
            }
            let action = s.machine.openRound(cohort: cohort, now: now)
            s.bytesReceived = 0
            s.bytesSent = 0
            guard case .startRound(_, _, _, let deadline) = action else { return action }
            let server: SecureAggregationServer
            do {
                guard keys.count == cohort.count else {
                    throw FederationError(code: .notInCohort, message: "a cohort member has no session")
                }
                server = try SecureAggregationServer(parameters: parameters, identityKeys: keys)
            } catch {
                return s.machine.abandonAttempt(
                    reason: FederationError(
                        code: .tooFewUpdates, message: "secure aggregation cannot start: \(error)", round: round))
            }
            let payload = model(round).withSecure(
                SecureRoundAssignment(
                    parameters: parameters, identityKeys: keys, weighting: weighting, reportsClipping: reportsClipping,
                    stageDeadline: options.stageDeadline))
            do {
                s.open = try sealRound(
                    payload, round: round, attempt: attempt, cohort: cohort, deadline: deadline, seed: seed,
                    clipping: s.clipping)
            } catch {
                return s.machine.abandonAttempt(
                    reason: FederationError(
                        code: .tooFewUpdates, message: "cannot seal the round's model: \(error)", round: round))
            }
            s.secure = SecureRoundState(
                round: round, attempt: attempt, server: server,
                index: Dictionary(uniqueKeysWithValues: cohort.enumerated().map { ($1, $0) }), participants: cohort,
                weighting: weighting, reportsClipping: reportsClipping, shapes: shapes,
                stageTimeout: options.stageDeadline,
                deadline: now.advanced(by: roundDeadline), expected: Set(0..<cohort.count))
            return action
        }
    }

    /// Closes the stage being collected when everyone expected has sent or its deadline passed. Returns the
    /// attempt's end (aggregate or abort) when it comes; nil while it goes on.
    func secureStep() -> SecureStep? {
        let now = clock.now
        // Past the guards the stage always moves on (next stage, finished or aborted): wake the waiters then.
        var moved = false
        defer { if moved { changes.notify() } }
        return state.withLock { s -> SecureStep? in
            guard var secure = s.secure, let stage = secure.collecting else { return nil }
            guard secure.expected.isSubset(of: secure.received) || now >= secure.deadline else { return nil }
            moved = true
            defer { s.secure = secure }
            do {
                switch stage {
                case .advertiseKeys:
                    let roster = try secure.server.closeAdvertiseKeys()
                    secure.roster = roster.serialized()
                    secure.expected = Set(roster.entries.map(\.index))
                    secure.collecting = .shareKeys
                case .shareKeys:
                    let inboxes = try secure.server.closeShareKeys()
                    for (recipient, shares) in inboxes {
                        secure.inboxes[recipient] = EncryptedShare.serialized(shares, round: UInt64(secure.round))
                    }
                    secure.expected = Set(inboxes.keys)
                    secure.collecting = .maskedInput
                case .maskedInput:
                    let request = try secure.server.closeMaskedInput()
                    secure.unmaskRequest = request.serialized()
                    secure.expected = Set(request.survivors)
                    secure.collecting = .unmask
                case .unmask:
                    let aggregate = try meter.measure(.aggregation) { try secure.server.finish() }
                    secure.collecting = nil
                    return .aggregate(aggregate, secure)
                }
                secure.received = []
                secure.deadline = now.advanced(by: secure.stageTimeout)
                logger.debug(
                    "secure aggregation: stage closed",
                    metadata: ["round": "\(secure.round)", "stage": "\(stage)", "next": "\(secure.expected.count)"])
                return nil
            } catch {
                secure.collecting = nil
                secure.aborted = "\(error)"
                return .aborted("stage \(stage): \(error)")
            }
        }
    }

    /// Turns the attempt's end into the round machine's action (close with the aggregate, or retry).
    func finishSecure(_ step: SecureStep) -> Machine.Action {
        defer { changes.notify() }
        return state.withLock { s in
            s.open = nil
            let round = s.secure?.round ?? -1
            switch step {
            case .aborted(let reason):
                return s.machine.abandonAttempt(
                    reason: FederationError(code: .tooFewUpdates, message: reason, round: round))
            case .aggregate(let sum, let secure):
                guard sum.hasPlausibleWeight(under: secure.server.parameters) else {
                    return s.machine.abandonAttempt(
                        reason: FederationError(
                            code: .tooFewUpdates,
                            message: "secure aggregation: the decoded total weight \(sum.totalWeight) is not one "
                                + "\(sum.survivors.count) survivors can have: the masks did not cancel", round: round))
                }
                let ids = sum.survivors.map { secure.participants[$0] }
                let count = secure.shapes.userTowerCount
                let mean = sum.totalWeight > 0 ? sum.mean : [Float](repeating: 0, count: sum.weightedSum.count)
                let gradientEnd = count + secure.shapes.itemRows * secure.shapes.dimension
                let gradient = Matrix(
                    rows: secure.shapes.itemRows, columns: secure.shapes.dimension,
                    storage: Array(mean[count..<gradientEnd]))
                var aggregate = AggregateUpdate(
                    meanDelta: Array(mean[..<count]), meanItemEmbeddingGradient: gradient,
                    exampleCount: secure.weighting == .examples
                        ? Int(sum.totalWeight.rounded()) : sum.survivors.count,
                    // Clients' losses are not revealed under secure aggregation.
                    meanLoss: 0, participants: ids)
                if secure.reportsClipping {
                    // Each survivor added its bit times the clip range (weight 1 each under DP's uniform weights).
                    aggregate.unclippedCount =
                        Double(sum.weightedSum[gradientEnd]) / Double(secure.server.parameters.clipRange)
                }
                let dropped = sum.dropped.keys.sorted().filter { !sum.survivors.contains($0) }.map {
                    secure.participants[$0]
                }
                let excluded = sum.excluded.keys.sorted().map { secure.participants[$0] }
                let rejections = sum.rejections.mapped {
                    FederationError(
                        code: .droppedOut, message: $0.description,
                        client: $0.client.map { secure.participants[$0] }, round: secure.round)
                }
                for error in sum.rejections {
                    logger.warning(
                        "secure aggregation: \(error.description)",
                        metadata: ["round": "\(secure.round)", "client": "\(error.clientID ?? "-")"])
                }
                return s.machine.closeWithSecureAggregate(
                    aggregate, droppedOut: dropped, excluded: excluded, rejections: rejections)
            }
        }
    }

    /// The quantiser's per-coordinate range of a secure round: the configured one, or under adaptive clipping at
    /// least the round's clip norm C, which moves. No coordinate of a clipped update exceeds C, so a range below
    /// it would clamp coordinates again and bias the sum beyond what DP clipping intends.
    static func quantiserRange(configured: Float, adaptiveClipNorm: Double?) -> Float {
        guard let norm = adaptiveClipNorm else { return configured }
        return max(configured, Float(norm))
    }

    /// A client's stage message (advertised keys, encrypted shares, masked input or unmask response), already
    /// opened and freshness-checked, handed to the SecAgg+ server. Refusals are recorded; the round goes on. A
    /// message of an earlier attempt of the round (a late one, after that attempt was abandoned) is refused
    /// without excluding its sender from the attempt being collected.
    func receiveSecure(kind: MessageKind, plaintext: [UInt8], client: String, round: Int, attempt: Int) throws {
        let result: Result<Void, any Error> = state.withLock { s in
            guard var secure = s.secure, secure.round == round, let stage = secure.collecting,
                let index = secure.index[client]
            else {
                return .failure(
                    ProtocolError(
                        code: .unexpectedMessage, message: "no secure-aggregation stage of round \(round) is open",
                        client: client, round: round))
            }
            guard secure.attempt == attempt else {
                return .failure(
                    ProtocolError(
                        code: .unexpectedMessage,
                        message: "a stage message of attempt \(attempt) while attempt \(secure.attempt) is open",
                        client: client, round: round))
            }
            defer { s.secure = secure }
            do {
                switch (kind, stage) {
                case (.advertiseKeys, .advertiseKeys):
                    let keys = try AdvertisedKeys(serialized: plaintext)
                    guard keys.index == index else { throw mismatch(client, round) }
                    try secure.server.receive(keys)
                case (.shareKeys, .shareKeys):
                    let (shareRound, shares) = try EncryptedShare.list(serialized: plaintext)
                    guard shareRound == UInt64(round) else { throw mismatch(client, round) }
                    try secure.server.receive(shares, from: index)
                case (.maskedInput, .maskedInput):
                    let input = try meter.measure(.codec) { try MaskedInput(serialized: plaintext) }
                    guard input.index == index else { throw mismatch(client, round) }
                    try meter.measure(.aggregation) { try secure.server.receive(input) }
                case (.unmask, .unmask):
                    let response = try UnmaskResponse(serialized: plaintext)
                    guard response.index == index else { throw mismatch(client, round) }
                    try secure.server.receive(response)
                default:
                    throw ProtocolError(
                        code: .unexpectedMessage, message: "\(kind) while collecting \(stage)", client: client,
                        round: round)
                }
                secure.received.insert(index)
                s.bytesReceived += plaintext.count
                if secure.expected.isSubset(of: secure.received) { changes.notify() }
                return .success(())
            } catch {
                // An excluded participant sends nothing more this attempt: the stage no longer waits for it.
                if secure.server.isExcluded(index), secure.expected.remove(index) != nil,
                    secure.expected.isSubset(of: secure.received)
                {
                    changes.notify()
                }
                return .failure(error)
            }
        }
        if case .failure(let error) = result {
            let refusal =
                (error as? ProtocolError)
                ?? ProtocolError(code: .malformedPayload, message: "\(error)", client: client, round: round)
            throw reject(refusal.about(client: client, round: round))
        }
    }

    private func mismatch(_ client: String, _ round: Int) -> ProtocolError {
        ProtocolError(
            code: .unexpectedMessage, message: "message names another participant or round", client: client,
            round: round)
    }

    enum StageAnswer {
        case wait
        case aborted(String)
        /// (client id, sealed stage input) for each requested client that takes part.
        case inputs([(String, [UInt8])])
    }

    /// The sealed inputs of `stage` (1 roster, 2 inbox, 3 unmask request) for the hosted `clients`, once ready.
    func stageInputs(for clients: [String], round: Int, attempt: Int, stage: Int) throws -> StageAnswer {
        let found: (SecureRoundState, [(String, Session)])? = state.withLock { s in
            guard let secure = s.secure, secure.round == round, secure.attempt == attempt else { return nil }
            var out: [(String, Session)] = []
            for client in clients {
                guard let session = s.sessions[client], secure.index[client] != nil else { continue }
                out.append((client, session))
            }
            return (secure, out)
        }
        guard let (secure, members) = found else {
            // A later round, or a later attempt of this one, means the requested attempt is over (its clients
            // must not wait for stage inputs that will never come).
            let current = state.withLock { s in s.secure.map { ($0.round, $0.attempt) } } ?? (-1, -1)
            return current > (round, attempt) ? .aborted("round \(round) attempt \(attempt) is over") : .wait
        }
        if let reason = secure.aborted { return .aborted(reason) }
        let ready: Bool
        let kind: MessageKind
        switch stage {
        case 1: (ready, kind) = (secure.roster != nil, .advertiseKeys)
        case 2: (ready, kind) = (secure.collecting.map { $0 >= .maskedInput } ?? true, .shareKeys)
        case 3: (ready, kind) = (secure.unmaskRequest != nil, .unmask)
        default:
            throw ProtocolError(code: .unexpectedMessage, message: "no stage \(stage)", round: round)
        }
        guard ready else { return .wait }
        var inputs: [(String, [UInt8])] = []
        // Sequence `attempt * 8 + stage`, as the clients' stage messages carry: a client refuses an input of another
        // attempt of the round (a replay of an earlier attempt's inbox or unmask request).
        let sequence = UInt64(attempt) * 8 + UInt64(stage)
        for (client, session) in members {
            let index = secure.index[client]!
            let plaintext: [UInt8]?
            switch stage {
            case 1: plaintext = secure.roster
            case 2: plaintext = secure.inboxes[index]
            default: plaintext = secure.unmaskRequest
            }
            guard let plaintext else { continue }
            let header = EnvelopeHeader(kind: kind, round: UInt64(round), sequence: sequence, clientID: client)
            let sealed = try meter.measure(.crypto) {
                try Envelope.seal(plaintext, header: header, using: session.keys.transmit).serialized
            }
            state.withLock { $0.bytesSent += sealed.count }
            inputs.append((client, sealed))
        }
        return .inputs(inputs)
    }
}

extension GlobalModelPayload {
    func withSecure(_ secure: SecureRoundAssignment) -> GlobalModelPayload {
        var copy = self
        copy.secure = secure
        return copy
    }
}

extension CoordinatorService {
    /// `GetStage`: long-polls until the requested stage's inputs are ready, then streams them.
    func secureStage(request: Fedrec_V1_StageRequest, response: RPCWriter<Fedrec_V1_RoundMessage>) async throws {
        let wait = min(maximumWait, .milliseconds(Int(request.waitMilliseconds)))
        let round = Int(clamping: request.round)
        let attempt = Int(request.attempt)
        // A stage a client never fetches (1-3 are the coordinator's answers) is refused and recorded like any
        // other bad poll.
        guard (1...3).contains(request.stage) else {
            throw core.reject(
                ProtocolError(
                    code: .unexpectedMessage, message: "no stage \(request.stage) to fetch (1...3)",
                    client: request.clientIds.first, round: round))
        }
        switch try await awaitStageInputs(
            clients: request.clientIds, round: round, attempt: attempt, stage: Int(request.stage), wait: wait)
        {
        case .aborted(let reason):
            try await response.write(.with { $0.aborted = .with { $0.reason = reason } })
        case .wait:
            try await response.write(.with { $0.wait = .init() })
        case .inputs(let inputs):
            core.stageDeliveries.withLock { $0.polled += 1 }
            for (client, sealed) in inputs {
                let (plan, chunks) = core.meter.measure(.codec) {
                    Chunker.split(sealed, chunkSize: core.chunkSize)
                }
                try await response.write(
                    .with {
                        $0.stageHeader = .with {
                            $0.round = request.round
                            $0.attempt = request.attempt
                            $0.stage = request.stage
                            $0.sealedFor = client
                            $0.payload = Wire.payloadInfo(plan)
                        }
                    })
                try await Self.writeChunks(chunks, to: response)
            }
        }
    }

    /// The sealed inputs of `stage` (1 roster, 2 inbox, 3 unmask request) for `clients`, once ready, or that the
    /// attempt was abandoned; `.wait` when they are not ready within `wait` (or the coordinator is stopping).
    func awaitStageInputs(clients: [String], round: Int, attempt: Int, stage: Int, wait: Duration) async throws
        -> CoordinatorCore.StageAnswer
    {
        let start = core.clock.now
        while true {
            let version = core.changes.version
            let answer = try core.stageInputs(for: clients, round: round, attempt: attempt, stage: stage)
            guard case .wait = answer else { return answer }
            // A cancelled handler (the server is being torn down) would find every wait over at once.
            if core.isStopping || Task.isCancelled || core.clock.now.offset - start.offset >= wait { return .wait }
            await core.changes.wait(after: version, timeout: .milliseconds(100), clock: core.clock)
        }
    }
}
