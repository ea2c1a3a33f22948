public import FedRecProtocol
import FedRecSecurity
import Foundation
public import GRPCCore
import Synchronization

/// The gRPC face of a `CoordinatorCore`.
public struct CoordinatorService: Fedrec_V1_Coordinator.SimpleServiceProtocol {
    let core: CoordinatorCore
    /// Longest a `SubmitUpdate` call may last; one still open then is cut (`stalledStream`), so a peer cannot
    /// hold a stream, and with it a connection place, by sending slowly or not at all. The builder sets the
    /// longest deadline of a round or stage plus a second: every message of a call belongs to a round or stage
    /// already open when the call began, so a message later than that is too late anyway.
    var callTimeLimit: Duration = .seconds(61)
    /// Longest a GetRound call is held before answering `wait`.
    let maximumWait: Duration = .seconds(5)

    public func getChallenge(request: Fedrec_V1_ChallengeRequest, context: ServerContext) async throws
        -> Fedrec_V1_Challenge
    {
        let nonce = try core.newChallenge()
        return .with {
            $0.nonce = Data(nonce)
            $0.coordinatorIdentity = core.identity.publicIdentity.line
        }
    }

    public func enrol(request: Fedrec_V1_EnrolRequest, context: ServerContext) async throws -> Fedrec_V1_EnrolResponse {
        let challenge = Array(request.challenge)
        guard core.consume(challenge: challenge) else {
            throw core.reject(
                ProtocolError(
                    code: .enrolmentRefused, message: "unknown, used or expired challenge",
                    client: request.clients.first?.clientID))
        }
        var accepted: [String] = []
        var rejected: [Fedrec_V1_Rejection] = []
        // A proof for an id that is not allow-listed, or a second one for the same id, is rejected without a
        // signature check or a log line of its own: however long the request, the coordinator checks at most one
        // signature per allow-listed client.
        var named = Set<String>()
        var unlisted = 0
        var firstUnlisted: String? = nil
        for proof in request.clients {
            guard (try? core.allowList.identity(named: proof.clientID)) != nil, named.insert(proof.clientID).inserted
            else {
                unlisted += 1
                if firstUnlisted == nil { firstUnlisted = proof.clientID }
                rejected.append(
                    .with {
                        $0.clientID = proof.clientID
                        $0.code = ProtocolError.Code.enrolmentRefused.description
                        $0.message = "not on the allow-list, or named twice in this request"
                    })
                continue
            }
            do {
                let claimed: PublicIdentity
                do {
                    claimed = try PublicIdentity(
                        name: proof.clientID, signingKey: SigningPublicKey(rawRepresentation: proof.ed25519PublicKey),
                        keyAgreementKey: KeyAgreementPublicKey(rawRepresentation: proof.x25519PublicKey))
                } catch let error as SecurityError {
                    throw ProtocolError(code: .enrolmentRefused, message: error.message, client: proof.clientID)
                }
                try core.enrol(claimed: claimed, challenge: challenge, signature: Array(proof.signature))
                accepted.append(proof.clientID)
            } catch let error as ProtocolError {
                core.reject(error.about(client: proof.clientID, round: nil))
                rejected.append(
                    .with {
                        $0.clientID = proof.clientID
                        $0.code = error.code.description
                        $0.message = error.message
                    })
            }
        }
        if !accepted.isEmpty {
            core.logger.info(
                "enrolled \(accepted.count) client(s)", metadata: ["total": "\(core.enrolledClients.count)"])
        }
        if unlisted > 0 {
            core.reject(
                ProtocolError(
                    code: .enrolmentRefused,
                    message: "\(unlisted) proof(s) for ids not on the allow-list or named twice in one request"
                        + (unlisted > 1 ? " (the first named)" : ""),
                    client: firstUnlisted))
        }
        return .with {
            $0.coordinatorIdentity = core.identity.publicIdentity.line
            $0.accepted = accepted
            $0.rejected = rejected
            $0.modelConfigurationJson = core.modelConfigurationJSON
            $0.fold = core.foldName
        }
    }

    public func getRound(
        request: Fedrec_V1_RoundRequest, response: RPCWriter<Fedrec_V1_RoundMessage>, context: ServerContext
    ) async throws {
        try checkClientList(request.clientIds, of: "GetRound")
        try core.authenticatePoll(PollRequest(request), proofs: request.proofs)
        switch try await awaitAssignment(request) {
        case .finished(let rounds):
            try await response.write(.with { $0.finished = .with { $0.completedRounds = UInt64(rounds) } })
        case .round(let header, let chunks):
            core.roundDeliveries.withLock { $0.polled += 1 }
            try await response.write(.with { $0.header = header })
            try await Self.writeChunks(chunks, to: response)
        case .wait, .tooLarge:  // (never too large: no bound is asked)
            try await response.write(.with { $0.wait = .init() })
        }
    }

    /// Waits (at most the request's wait, and `maximumWait`) for an assignment of the request's clients newer than
    /// the one it names, as a `GetRound` poll (authenticated by the caller) does; `.wait` when none came in time.
    /// `maximumLength` bounds the assignment's bytes (`.tooLarge`, at once, above it).
    func awaitAssignment(_ request: Fedrec_V1_RoundRequest, maximumLength: Int = .max) async throws
        -> CoordinatorCore.Assignment
    {
        let wait = min(maximumWait, .milliseconds(Int(request.waitMilliseconds)))
        let start = core.clock.now
        while true {
            let version = core.changes.version
            let assignment = try core.assignment(
                for: request.clientIds, lastEpoch: request.lastEpoch, lastRound: request.lastRound,
                lastAttempt: request.lastAttempt, maximumLength: maximumLength)
            guard case .wait = assignment else { return assignment }
            // A cancelled handler (the server is being torn down) would find every wait over at once.
            if core.isStopping || Task.isCancelled || core.clock.now.offset - start.offset >= wait { return .wait }
            await core.changes.wait(after: version, timeout: .milliseconds(100), clock: core.clock)
        }
    }

    /// The most bytes of assignment (sealed model and header) one `SubmitResponse` carries in `next_round`: gRPC's
    /// default message limit, which the client keeps, is 4 MiB. A larger model goes out through `GetRound`, which
    /// streams it in chunks.
    static let maximumInlineRoundBytes = 3 << 20

    /// Answers an update stream's next-round request in `response` as a `GetRound` poll would be answered (its
    /// proofs and stamp checked the same way), when an assignment newer than the one it names comes within its
    /// wait and fits `maximumInlineRoundBytes`; otherwise leaves `next_round` empty and the caller polls. A refused
    /// request is recorded and logged, and fails nothing: the updates before it were taken.
    func attachNextRound(_ request: Fedrec_V1_RoundRequest, to response: inout Fedrec_V1_SubmitResponse) async {
        do {
            try checkClientList(request.clientIds, of: "SubmitUpdate's next-round request")
            try core.authenticatePoll(PollRequest(request, call: .nextRound), proofs: request.proofs)
            switch try await awaitAssignment(request, maximumLength: Self.maximumInlineRoundBytes) {
            case .wait, .tooLarge:
                return
            case .finished(let rounds):
                response.nextRound = [.with { $0.finished = .with { $0.completedRounds = UInt64(rounds) } }]
            case .round(let header, let chunks):
                core.roundDeliveries.withLock { $0.inline += 1 }
                response.nextRound = [.with { $0.header = header }] + Self.chunkMessages(chunks)
            }
        } catch {
            // Refusals were recorded and logged where they were raised; the caller's GetRound poll meets them again.
            return
        }
    }

    /// A `GetRound` or `GetStage` request names at most one client per allow-listed client (a process asks for
    /// the clients it hosts); a longer list is refused before any work, since each poll looks up every name.
    func checkClientList(_ clientIDs: [String], of rpc: String) throws {
        let limit = core.allowList.entries.count
        guard clientIDs.count <= limit else {
            throw core.reject(
                ProtocolError(
                    code: .oversized,
                    message: "\(rpc) names \(clientIDs.count) clients; the allow-list has \(limit)"))
        }
    }

    /// Streams a payload's chunks, in order, as `DataChunk` messages (after the header that announced them).
    static func writeChunks(_ chunks: [ArraySlice<UInt8>], to response: RPCWriter<Fedrec_V1_RoundMessage>)
        async throws
    {
        try await writeChunks(chunks.map { Data($0) }, to: response)
    }

    /// `writeChunks` for chunks already in `Data` (a round's sealed model, shared by every answer).
    static func writeChunks(_ chunks: [Data], to response: RPCWriter<Fedrec_V1_RoundMessage>) async throws {
        for message in chunkMessages(chunks) { try await response.write(message) }
    }

    /// A payload's chunks, in order, as `DataChunk` messages.
    static func chunkMessages(_ chunks: [Data]) -> [Fedrec_V1_RoundMessage] {
        chunks.enumerated().map { index, chunk in
            .with {
                $0.data = .with {
                    $0.index = UInt32(index)
                    $0.data = chunk
                }
            }
        }
    }

    public func getStage(
        request: Fedrec_V1_StageRequest, response: RPCWriter<Fedrec_V1_RoundMessage>, context: ServerContext
    ) async throws {
        try checkClientList(request.clientIds, of: "GetStage")
        try core.authenticatePoll(PollRequest(request), proofs: request.proofs)
        guard core.secureAggregation != nil else {
            try await response.write(
                .with { $0.aborted = .with { $0.reason = "secure aggregation is not enabled on this coordinator" } })
            return
        }
        try await secureStage(request: request, response: response)
    }

    /// One or more sealed client messages, one after another: each an `UpdateHeader`, then its envelope's
    /// chunks. A client process sends its selected clients' updates of a round in one stream, each as soon as it
    /// is sealed. Each message is opened, checked and handed to the round on its own: a refused one is recorded
    /// and logged and the others go on; the call then fails with the refusal (one) or a summary naming every
    /// refused client (several), with the count of accepted messages (`Wire.acceptedMetadataKey`) and the client
    /// id of each refused message (`Wire.refusedMetadataKey`) in its metadata. A malformed stream (a message not
    /// led by a header, a bad chunk) breaks off there; the failure then also names the refusals before it, and the
    /// broken message's client is listed among the refused when its header was read. A stream carries at most one
    /// message per allow-listed client (a process sends one per hosted client and stage); a longer one breaks off,
    /// so no call can make the coordinator hold an unbounded list of refusals.
    public func submitUpdate(
        request: RPCAsyncSequence<Fedrec_V1_UpdateMessage, any Error>, context: ServerContext
    ) async throws -> Fedrec_V1_SubmitResponse {
        let expired = Expiry()
        let submitted = try await withThrowingTaskGroup(of: Submitted?.self) { group in
            group.addTask { try await self.readUpdates(request, expired: expired) }
            group.addTask {
                // Sets `expired` when the time is up; the reader, cancelled then, ends the call as stalled.
                if (try? await core.clock.sleep(for: callTimeLimit)) != nil { expired.set() }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let submitted = result { return submitted }
                group.cancelAll()  // the time is up: stop the reader
            }
            throw CancellationError()
        }
        var response = Fedrec_V1_SubmitResponse.with { $0.accepted = true }
        if let awaited = submitted.awaitedStage {
            try await attachStageInputs(awaited, to: &response)
        } else if let request = submitted.nextRound {
            await attachNextRound(request, to: &response)
        }
        return response
    }

    /// What a `SubmitUpdate` call took: when every message was taken and they were one stage's (1-3) messages
    /// of one attempt, that stage and the clients, whose next inputs the answer may carry.
    struct Submitted: Sendable {
        var awaitedStage: (clients: [String], round: Int, attempt: Int, stage: Int)? = nil
        /// The stream's closing next-round request (a `GetRound` poll to answer in the response), if any.
        var nextRound: Fedrec_V1_RoundRequest? = nil
    }

    /// The most bytes of sealed stage inputs one `SubmitResponse` carries; a process hosting clients whose inputs
    /// are larger gets `stage_ready` false and polls `GetStage`, which streams them in chunks.
    static let maximumInlineStageBytes = 1 << 20

    /// Waits, as a `GetStage` poll does (at most `maximumWait`), until the stage's outputs are ready, then puts
    /// the sealed next inputs of `awaited.clients` into `response` (or that the attempt was abandoned).
    func attachStageInputs(
        _ awaited: (clients: [String], round: Int, attempt: Int, stage: Int),
        to response: inout Fedrec_V1_SubmitResponse
    ) async throws {
        switch try await awaitStageInputs(
            clients: awaited.clients, round: awaited.round, attempt: awaited.attempt, stage: awaited.stage,
            wait: maximumWait)
        {
        case .wait:
            return
        case .aborted(let reason):
            response.stageReady = true
            response.stageAborted = reason
        case .inputs(let inputs):
            // Too large for one answer: the process polls GetStage, which streams them (sealing them again; the
            // round's sent-bytes figure then counts them twice, only in this rare case).
            guard inputs.reduce(0, { $0 + $1.1.count }) <= Self.maximumInlineStageBytes else { return }
            response.stageReady = true
            core.stageDeliveries.withLock { $0.inline += 1 }
            response.stageInputs = inputs.map { input in
                .with {
                    $0.sealedFor = input.0
                    $0.envelope = Data(input.1)
                }
            }
        }
    }

    /// `submitUpdate`'s reading. Cancelled once `expired` is set, it fails the call as `stalledStream`, with the
    /// same metadata as any other failure (the messages taken before stay taken, and the sender learns which).
    func readUpdates(
        _ request: RPCAsyncSequence<Fedrec_V1_UpdateMessage, any Error>, expired: Expiry
    ) async throws -> Submitted {
        var messages = request.makeAsyncIterator()
        /// The next message; once the call's time is up (the stream then ends or fails), `CallExpired` instead.
        func nextMessage() async throws -> Fedrec_V1_UpdateMessage? {
            let message = try await messages.next()
            // A stream the sender closed (nil, not cancelled) ends as usual even when the time is up meanwhile.
            if expired.isSet, message != nil || Task.isCancelled { throw CallExpired() }
            return message
        }
        var next: Fedrec_V1_UpdateMessage? = nil
        let limit = core.allowList.entries.count
        var submitted = 0
        var accepted = 0
        var refusals: [ProtocolError] = []
        /// The client ids of the refused messages, as their headers named them (the sender's own ids).
        var refused: [String] = []
        /// The client of the message being read, until it is taken or refused.
        var reading: String? = nil
        /// The clients of the secure-stage messages taken, and their (round, attempt, stage) while all share one.
        var stageClients: [String] = []
        var stageKey: (round: Int, attempt: Int, stage: Int)? = nil
        var mixedStages = false
        var nextRound: Fedrec_V1_RoundRequest? = nil
        do {
            next = try await nextMessage()
            guard next != nil else {
                throw core.reject(ProtocolError(code: .malformedChunk, message: "empty update stream"))
            }
            while let message = next {
                if case .nextRound(let request)? = message.part {
                    // The stream's last message, after at least one client message; answered once all were taken.
                    guard submitted > 0, try await nextMessage() == nil else {
                        throw core.reject(
                            ProtocolError(
                                code: .malformedChunk,
                                message: "a next-round request may only end a stream of client messages"))
                    }
                    nextRound = request
                    break
                }
                guard case .header(let header)? = message.part else {
                    throw core.reject(
                        ProtocolError(
                            code: .malformedChunk, message: "each message of an update stream starts with a header"))
                }
                submitted += 1
                // An envelope's client id is 1...255 UTF-8 bytes: a longer one cannot be a client's, and is not kept
                // (each refused message's id stays listed until the stream ends; a 1 MiB id each would pin MiBs).
                guard (1...255).contains(header.clientID.utf8.count) else {
                    throw core.reject(
                        ProtocolError(
                            code: .malformedChunk,
                            message: "a message header names a client id of \(header.clientID.utf8.count) bytes "
                                + "(1...255 allowed)",
                            client: CoordinatorCore.shortened(header.clientID, to: 64)))
                }
                let client = header.clientID
                reading = client
                let round = Int(clamping: header.round)
                guard submitted <= limit else {
                    throw core.reject(
                        ProtocolError(
                            code: .malformedChunk,
                            message: "a stream carries at most one message per allow-listed client (\(limit))",
                            client: client, round: round))
                }
                // Known before any chunk is read: a message of a client that is not enrolled, or for a round that
                // is not collecting, is read through without being stored (an unauthenticated sender cannot make
                // the coordinator hold payloads), then refused.
                var refusedUpfront = admissionRefusal(client: client, round: round)
                // The envelope authenticates its client only with the last chunk; the header's proof does at once,
                // so only the client's key holder takes its place below (a sender without the key could otherwise
                // name the client, stall, and have its genuine message refused meanwhile).
                if refusedUpfront == nil, let session = core.session(of: client),
                    !core.meter.measure(.crypto, { HeaderProof.verifies(header, key: session.keys.receive) })
                {
                    refusedUpfront = ProtocolError(
                        code: .authenticationFailed,
                        message: "the message header's proof does not authenticate it under the client's key",
                        client: client, round: round)
                }
                // One message per named client is stored at a time (an honest process sends its clients' messages
                // one after another), so what senders can make the coordinator hold is bounded by the allow-list,
                // not by the number of streams and connections.
                var claimed = false
                if refusedUpfront == nil {
                    claimed = core.beginReceiving(from: client)
                    if !claimed {
                        refusedUpfront = ProtocolError(
                            code: .unavailable, message: "another message of this client is being received",
                            client: client, round: round)
                    }
                }
                defer { if claimed { core.endReceiving(from: client) } }
                let bytes: [UInt8]
                do {
                    var assembler = try ChunkAssembler(
                        plan: Wire.plan(header.payload), chunkSize: core.chunkSize,
                        maximumLength: core.shapes.maximumUpdateByteCount + 1024, keepsBytes: refusedUpfront == nil)
                    while !assembler.isComplete {
                        guard let chunk = try await nextMessage() else { break }
                        guard case .data(let data)? = chunk.part else {
                            throw ProtocolError(code: .malformedChunk, message: "expected a data chunk")
                        }
                        try assembler.append(index: Int(data.index), data.data)
                    }
                    bytes = try assembler.finish()
                } catch let error as ProtocolError {
                    throw core.reject(error.about(client: client, round: round))
                }
                do {
                    // Checked again once the payload is in: the round may have closed while it arrived.
                    if let refusal = refusedUpfront ?? admissionRefusal(client: client, round: round) {
                        throw core.reject(refusal)
                    }
                    if case .stage(let attempt, let stage) = try core.receive(
                        envelope: bytes, client: client, round: round)
                    {
                        if let key = stageKey, key != (round, attempt, stage) { mixedStages = true }
                        stageKey = stageKey ?? (round, attempt, stage)
                        stageClients.append(client)
                    } else {
                        mixedStages = true
                    }
                    accepted += 1
                } catch let error as ProtocolError {
                    refusals.append(error)  // recorded and logged where it was raised; the stream goes on
                    refused.append(client)
                }
                reading = nil
                next = try await nextMessage()
            }
        } catch let error where expired.isSet && !(error is ProtocolError) {
            if let reading { refused.append(reading) }
            let cut = core.reject(
                ProtocolError(
                    code: .stalledStream,
                    message: "SubmitUpdate still open after \(callTimeLimit) (\(submitted) message(s) begun): "
                        + "the call is cut", client: reading ?? refused.last))
            throw Self.failure(
                broken: cut, refusals: refusals, refused: refused, submitted: submitted, accepted: accepted)
        } catch let broken as ProtocolError {
            if let reading { refused.append(reading) }
            throw Self.failure(
                broken: broken, refusals: refusals, refused: refused, submitted: submitted, accepted: accepted)
        }
        guard refusals.isEmpty else {
            throw Self.failure(
                broken: nil, refusals: refusals, refused: refused, submitted: submitted, accepted: accepted)
        }
        var result = Submitted(nextRound: nextRound)
        if !mixedStages, let key = stageKey, (1...3).contains(key.stage) {
            result.awaitedStage = (stageClients, key.round, key.attempt, key.stage)
        }
        return result
    }

    /// Why a message of `client` for `round` cannot be taken whatever it holds (the client is not enrolled, or the
    /// round is not collecting), or nil.
    func admissionRefusal(client: String, round: Int) -> ProtocolError? {
        if core.session(of: client) == nil {
            return ProtocolError(code: .notEnrolled, message: "not enrolled", client: client, round: round)
        }
        if !core.isCollecting(round: round) {
            return ProtocolError(
                code: .unexpectedMessage, message: "round \(round) is not collecting updates", client: client,
                round: round)
        }
        return nil
    }

    /// How a `SubmitUpdate` call fails: with its one refusal as it is, or a summary naming every refused client,
    /// led by the error that broke the stream off if one did; the metadata counts the messages taken and lists
    /// the refused messages' clients (`refused`) either way, so a sender learns which of its messages were taken
    /// (`Wire.takenClients`). The message spells out the first `listedRefusals` refusals and counts the rest.
    static func failure(
        broken: ProtocolError?, refusals: [ProtocolError], refused: [String], submitted: Int, accepted: Int
    ) -> RPCError {
        let listedRefusals = 10
        let listed =
            refusals.prefix(listedRefusals).map { "\($0.client ?? "-"): \($0.message)" }.joined(separator: "; ")
            + (refusals.count > listedRefusals ? "; and \(refusals.count - listedRefusals) more" : "")
        let message: String
        let code: RPCError.Code
        if let broken {
            code = broken.rpcErrorCode
            message =
                broken.description
                + (refusals.isEmpty ? "" : "; before it, \(refusals.count) of \(submitted) messages refused: \(listed)")
        } else {
            code = refusals[0].rpcErrorCode
            message =
                refusals.count == 1
                ? refusals[0].description : "\(refusals.count) of \(submitted) messages refused: \(listed)"
        }
        var metadata: Metadata = [Wire.acceptedMetadataKey: "\(accepted)"]
        for client in refused { metadata.addBinary(Array(client.utf8), forKey: Wire.refusedMetadataKey) }
        return RPCError(code: code, message: message, metadata: metadata)
    }

    public func status(request: Fedrec_V1_StatusRequest, context: ServerContext) async throws
        -> Fedrec_V1_StatusResponse
    {
        let records = core.records
        // Anyone who reaches the port may call Status. Under DP every per-round figure but the round number is
        // released outside the accountant: the training loss, example count and held-out Recall@20 are computed
        // from the clients' data, and the participant count (so also the byte counts, stragglers, refusals, the
        // attempt that closed and the time taken) follows the Poisson cohort's realised size, which tells whether
        // a user took part. They stay in the coordinator's state folder; the answer carries 0 (-1 for Recall@20).
        let withholding = core.state.withLock { $0.ledger != nil }
        return .with {
            $0.completedRounds = UInt64(core.completedRounds)
            $0.enrolled = UInt32(core.enrolledClients.count)
            $0.state = core.state.withLock { $0.finished ? "finished" : ($0.open != nil ? "collecting" : "idle") }
            $0.rounds = records.map { Self.metrics($0, withholdingUnderDP: withholding) }
        }
    }

    static func metrics(_ r: RoundRecord, withholdingUnderDP withholding: Bool = false)
        -> Fedrec_V1_RoundMetrics
    {
        .with {
            $0.round = UInt64(r.round)
            $0.recallAt20 = -1
            guard !withholding else { return }
            $0.attempt = UInt32(r.attempt)
            $0.participants = UInt32(r.participants)
            $0.examples = UInt64(r.examples)
            $0.meanLoss = r.meanLoss
            $0.bytesReceived = UInt64(r.bytesReceived)
            $0.bytesSent = UInt64(r.bytesSent)
            $0.seconds = r.seconds
            $0.recallAt20 = r.recallAt20 ?? -1
            $0.rejected = UInt32(r.rejected)
            $0.stragglers = UInt32(r.stragglers)
        }
    }
}

/// Thrown inside `readUpdates` once the call's time is up.
struct CallExpired: Error {}

/// Whether a call's time is up (set once, by its timer).
final class Expiry: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}
