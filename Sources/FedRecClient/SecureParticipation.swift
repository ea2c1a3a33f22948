import FedRecData
import FedRecFederation
import FedRecModel
import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
import GRPCCore
import Logging

/// A hosted virtual client's part in one secure-aggregation attempt.
struct SecureParticipant {
    let client: VirtualClient
    var machine: SecureAggregationClient
    /// The trained update in the plain upload's block-sparse encoding until its masked input is made: the flat
    /// input (0.93 MB for the benchmark model) is mostly zeros, since only the client's history rows of the
    /// history table and the items it scored move, so a process hosting many participants keeps a fraction of it
    /// between training and stage 3.
    let encodedUpdate: [UInt8]
    let weight: Float
}

extension FederatedClient {
    /// Secure aggregation: trains each selected virtual client, then runs the four SecAgg+ stages for all of
    /// them (advertise keys, share keys, masked input, unmask). Only the masked input carries the update, and
    /// it is meaningless without the others' masks. A client that is left out of a stage (dropped or excluded by
    /// the coordinator) stops; an aborted attempt ends the round for this process. Each stage's upload call ends
    /// at the latest the stage deadline plus `uploadGrace` after `deadline` (the round's) or after its start,
    /// whichever is later. The unmask stage's call ends with the next-round request `nextRound` makes; returns
    /// its answer's next assignment (empty: poll `GetRound`).
    func participateSecurely(
        _ secure: SecureRoundAssignment, header: Fedrec_V1_RoundHeader, deadline: ContinuousClock.Instant,
        selected: [String], shapes: PayloadShapes, train: (VirtualClient) -> ClientUpdate?,
        nextRound: @escaping () throws -> Fedrec_V1_RoundRequest, service: Fedrec_V1_Coordinator.Client<Transport>
    ) async throws -> [Fedrec_V1_RoundMessage] {
        let round = Int(clamping: header.round)
        let attempt = Int(header.attempt)
        var participants: [String: SecureParticipant] = [:]
        // The graph and digest once per round, shared by every hosted participant.
        let context: SecureAggregationClient.RoundContext
        do { context = try SecureAggregationClient.RoundContext(parameters: secure.parameters) } catch {
            logger.error("secure aggregation refused: \(error)", metadata: ["round": "\(round)"])
            return []
        }
        for id in selected {
            guard !isStopping, let client = clients[id],
                let index = secure.parameters.participants.firstIndex(of: id),
                let update = train(client)
            else { continue }
            do {
                let machine = try SecureAggregationClient(
                    context: context, index: index, identity: client.identity.signing,
                    identityKeys: secure.identityKeys)
                let weight = secure.weighting == .examples ? Float(update.exampleCount) : 1
                let encodedUpdate = meter.measure(.codec) { ClientUpdatePayload.encode(update) }
                participants[id] = SecureParticipant(
                    client: client, machine: machine, encodedUpdate: encodedUpdate, weight: weight)
            } catch {
                logger.error(
                    "secure aggregation refused: \(error)", metadata: ["client": "\(id)", "round": "\(round)"])
            }
        }
        // Each stage's messages of all hosted participants travel in one call; a participant whose message was
        // not taken (or could not be made) stops.
        // Stage 1: advertise keys.
        try checkKillHook(stage: 1)
        // A call's answer may carry the next stage's inputs (the coordinator held it until they were ready).
        var answer: Fedrec_V1_SubmitResponse?
        let advertised: [String]
        (advertised, answer) = try await submitInOneCall(
            participants.keys.sorted(), round: round, what: "secure stage 1 message", sampleMemory: false,
            deadline: deadline, stageDeadline: secure.stageDeadline, service: service
        ) { id in
            guard let keys = try? participants[id]!.machine.advertiseKeys() else { return nil }
            let messages = try stageMessages(
                keys.serialized(), kind: .advertiseKeys, stage: 1, id: id, round: round, attempt: attempt)
            return (id, messages)
        }
        participants = participants.filter { advertised.contains($0.key) }
        // Stages 2-4: fetch the coordinator's output of the previous stage, answer it.
        for stage in 2...4 {
            guard !participants.isEmpty, !isStopping else { return [] }
            let inputs: [String: [UInt8]]?
            switch Self.inlineStage(answer, requested: Set(participants.keys)) {
            case .aborted(let reason)?:
                logger.warning("secure round \(round) attempt \(attempt) abandoned: \(reason)")
                inputs = nil
            case .inputs(let sealed)?:
                inputs = openStageInputs(sealed, stage: stage - 1, round: round, attempt: attempt)
            case .wait?, nil:
                inputs = try await fetchStage(
                    stage - 1, clientIDs: participants.keys.sorted(), round: round, attempt: attempt,
                    participantCount: secure.parameters.participants.count, service: service)
            }
            guard let inputs else { return [] }
            try checkKillHook(stage: stage)
            let present = Set(inputs.keys)
            for id in participants.keys.sorted() where !present.contains(id) {
                logger.info("not in secure stage \(stage)", metadata: ["client": "\(id)", "round": "\(round)"])
                participants[id] = nil
            }
            // Once a round, when the first masked input (the largest message) is made, memory is sampled.
            let answered: [String]
            (answered, answer) = try await submitInOneCall(
                participants.keys.sorted(), round: round, what: "secure stage \(stage) message",
                sampleMemory: stage == 3, deadline: deadline, stageDeadline: secure.stageDeadline,
                nextRound: stage == 4 ? nextRound : nil, service: service
            ) { id in
                let opened = inputs[id]!
                let kind: MessageKind
                let answer: [UInt8]
                do {
                    switch stage {
                    case 2:
                        let roster = try Roster(serialized: opened)
                        let shares = try participants[id]!.machine.shareKeys(roster: roster)
                        (kind, answer) = (.shareKeys, EncryptedShare.serialized(shares, round: UInt64(round)))
                    case 3:
                        let (_, inbox) = try EncryptedShare.list(serialized: opened)
                        let p = participants[id]!
                        let values = try meter.measure(.codec) {
                            SecureInput.flatten(
                                try ClientUpdatePayload.decode(p.encodedUpdate, shapes: shapes),
                                clippingReportScale: secure.reportsClipping ? secure.parameters.clipRange : nil)
                        }
                        let masked = try meter.measure(.crypto) {
                            try participants[id]!.machine.maskedInput(values, weight: p.weight, shares: inbox)
                        }
                        (kind, answer) = (.maskedInput, meter.measure(.codec) { masked.serialized() })
                    default:
                        let request = try UnmaskRequest(serialized: opened)
                        // Other clients' shares: sealed from zeroing memory, no plain copy left behind.
                        let shares = try participants[id]!.machine.unmask(request).serializedSecret()
                        return (
                            id,
                            try stageMessages(
                                shares, kind: .unmask, stage: stage, id: id, round: round, attempt: attempt)
                        )
                    }
                } catch {
                    logger.error(
                        "secure stage \(stage) refused: \(error)", metadata: ["client": "\(id)", "round": "\(round)"])
                    return nil
                }
                return (id, try stageMessages(answer, kind: kind, stage: stage, id: id, round: round, attempt: attempt))
            }
            participants = participants.filter { answered.contains($0.key) }
        }
        accepted.withLock { $0 += participants.count }
        return answer?.nextRound ?? []
    }

    /// Test hook (`--kill-at-stage`): the process SIGKILLs itself before sending this stage's messages.
    private func checkKillHook(stage: Int) throws {
        guard options.killAtStage == stage else { return }
        logger.warning("test hook: killing this process before secure stage \(stage)")
        kill(getpid(), SIGKILL)
    }

    /// One stage message of hosted client `id` as `SubmitUpdate` messages: sealed for the coordinator, chunked.
    private func stageMessages<Plaintext: FedRecSecurity.ContiguousBytes>(
        _ plaintext: Plaintext, kind: MessageKind, stage: Int, id: String, round: Int, attempt: Int
    ) throws -> [Fedrec_V1_UpdateMessage] {
        let client = clients[id]!
        let envelope = try meter.measure(.crypto) {
            try Envelope.seal(
                plaintext,
                header: EnvelopeHeader(
                    kind: kind, round: UInt64(round), sequence: UInt64(attempt * 8 + stage), clientID: id),
                using: client.keys.transmit
            ).serialized
        }
        return try meter.measure(.codec) {
            try Wire.updateMessages(
                envelope: envelope, clientID: id, round: round, attempt: attempt, proofKey: client.keys.transmit,
                chunkSize: options.chunkSize)
        }
    }

    /// Long-polls `GetStage` until the coordinator has the inputs of `stage` (1 roster, 2 shares, 3 unmask
    /// request): the opened plaintext per hosted client that takes part, or nil when the attempt was aborted or
    /// this process is stopping.
    private func fetchStage(
        _ stage: Int, clientIDs: [String], round: Int, attempt: Int, participantCount: Int,
        service: Fedrec_V1_Coordinator.Client<Transport>
    ) async throws -> [String: [UInt8]]? {
        let started = ContinuousClock.now
        while !isStopping {
            var request = Fedrec_V1_StageRequest.with {
                $0.clientIds = clientIDs
                $0.round = UInt64(round)
                $0.attempt = UInt32(attempt)
                $0.stage = UInt32(stage)
                $0.waitMilliseconds = UInt32(options.pollMilliseconds)
                $0.stamp = stamper.next()
            }
            request.proofs = try pollProofs(PollRequest(request))
            let asked = ContinuousClock.now
            let answer = try await refusingPoll {
                try await service.getStage(request, options: pollCallOptions) { response in
                    try await Self.readStage(
                        response.messages, chunkSize: self.options.chunkSize, requested: Set(clientIDs),
                        participantCount: participantCount)
                }
            }
            switch answer {
            case .aborted(let reason):
                logger.warning("secure round \(round) attempt \(attempt) abandoned: \(reason)")
                return nil
            case .wait:
                if ContinuousClock.now - started > .seconds(600) {
                    logger.warning("secure stage \(stage) of round \(round) never came: giving up on it")
                    return nil
                }
                if Self.answeredAtOnce(since: asked, pollMilliseconds: options.pollMilliseconds) {
                    try await pause(.milliseconds(250))
                }
                continue
            case .inputs(let sealed):
                return openStageInputs(sealed, stage: stage, round: round, attempt: attempt)
            }
        }
        return nil
    }

    /// Opens the sealed inputs of `stage` (1 roster, 2 shares, 3 unmask request), each for its hosted client;
    /// one that does not open, or belongs to another attempt, is logged and left out.
    private func openStageInputs(_ sealed: [(String, [UInt8])], stage: Int, round: Int, attempt: Int)
        -> [String: [UInt8]]
    {
        let kind: MessageKind = stage == 1 ? .advertiseKeys : (stage == 2 ? .shareKeys : .unmask)
        var opened: [String: [UInt8]] = [:]
        for (id, bytes) in sealed {
            guard let client = clients[id] else { continue }
            do {
                let envelope = try Envelope(serialized: bytes)
                // Bound to this attempt (sequence attempt * 8 + stage, authenticated): an earlier attempt's
                // input replayed on the path is refused.
                guard envelope.header.sequence == UInt64(attempt) * 8 + UInt64(stage) else {
                    throw ProtocolError(
                        code: .unexpectedMessage,
                        message: "stage \(stage) input of sequence \(envelope.header.sequence), not of attempt "
                            + "\(attempt)", round: round)
                }
                opened[id] = try meter.measure(.crypto) {
                    try envelope.open(using: client.keys.receive, clientID: id, kind: kind, round: UInt64(round))
                }
            } catch {
                logger.error(
                    "secure stage input refused: \(error)", metadata: ["client": "\(id)", "round": "\(round)"])
            }
        }
        return opened
    }

    /// The next stage's inputs a `SubmitResponse` carries, checked as `readStage` checks a `GetStage` answer: at
    /// most one per requested client, none for another, each at most `maximumStageInputBytes`. Nil when it
    /// carries none (no answer, or `stage_ready` false) or breaks those rules: the caller then polls
    /// `GetStage` instead.
    static func inlineStage(_ response: Fedrec_V1_SubmitResponse?, requested: Set<String>) -> StageAnswer? {
        guard let response, response.stageReady else { return nil }
        if !response.stageAborted.isEmpty { return .aborted(response.stageAborted) }
        var answered = Set<String>()
        var inputs: [(String, [UInt8])] = []
        for input in response.stageInputs {
            guard requested.contains(input.sealedFor), answered.insert(input.sealedFor).inserted,
                input.envelope.count <= maximumStageInputBytes
            else { return nil }
            inputs.append((input.sealedFor, Array(input.envelope)))
        }
        return .inputs(inputs)
    }

    enum StageAnswer: Sendable {
        case wait
        case aborted(String)
        case inputs([(String, [UInt8])])
    }

    /// The largest stage input accepted: rosters, share inboxes and unmask requests are kilobytes even for
    /// thousands of participants (a roster entry is 164 bytes; 2^16 participants make 10.7 MB).
    static var maximumStageInputBytes: Int { 16 << 20 }

    /// The most bytes one `GetStage` answer for `requested` clients of a round of `participantCount` may
    /// announce in all: per requested client 64 KiB plus 256 bytes per participant (a roster, the largest input,
    /// is 164 bytes per participant), and never less than 64 MiB. A coordinator can make a process hosting many
    /// clients hold what honest inputs of that round could need, not `maximumStageInputBytes` for each.
    static func maximumStageAnswerBytes(requested: Int, participantCount: Int) -> Int {
        let perInput = min(maximumStageInputBytes, (64 << 10) + 256 * max(participantCount, 0))
        return max(64 << 20, requested * perInput)
    }

    /// Reads one `GetStage` answer: at most one input for each of the `requested` clients, none for another, each
    /// at most `maximumStageInputBytes` and all together at most `maximumStageAnswerBytes` (a coordinator cannot
    /// make a client store more than it asked for). `answerLimit` replaces the latter in tests.
    static func readStage(
        _ messages: RPCAsyncSequence<Fedrec_V1_RoundMessage, any Error>, chunkSize: Int, requested: Set<String>,
        participantCount: Int, answerLimit: Int? = nil
    ) async throws -> StageAnswer {
        var inputs: [(String, [UInt8])] = []
        var answered = Set<String>()
        var iterator = messages.makeAsyncIterator()
        // The input being received; its assembler is mutated in place (a copy per chunk would copy everything
        // received so far each time).
        var pending: (id: String, assembler: ChunkAssembler)? = nil
        var announced = 0
        let answerLimit =
            answerLimit ?? maximumStageAnswerBytes(requested: requested.count, participantCount: participantCount)
        while let message = try await iterator.next() {
            switch message.part {
            case .wait: return .wait
            case .aborted(let a): return .aborted(a.reason)
            case .stageHeader(let header):
                if pending != nil { throw ProtocolError(code: .malformedChunk, message: "stage input cut short") }
                guard requested.contains(header.sealedFor), answered.insert(header.sealedFor).inserted else {
                    throw ProtocolError(
                        code: .unexpectedMessage,
                        message: "a stage input for '\(header.sealedFor)', not requested or sent twice")
                }
                let plan = Wire.plan(header.payload)
                // Checked before adding: an announced length may be anything up to Int.max.
                guard plan.totalLength <= answerLimit - announced else {
                    throw ProtocolError(
                        code: .oversized,
                        message: "stage answer of more than \(answerLimit) bytes for \(requested.count) client(s)")
                }
                pending = (
                    header.sealedFor,
                    try ChunkAssembler(plan: plan, chunkSize: chunkSize, maximumLength: maximumStageInputBytes)
                )
                announced += plan.totalLength  // not negative: the assembler refuses that
            case .data(let chunk):
                guard pending != nil else {
                    throw ProtocolError(code: .malformedChunk, message: "stage data without a header")
                }
                try pending!.assembler.append(index: Int(chunk.index), chunk.data)
                if pending!.assembler.isComplete {
                    inputs.append((pending!.id, try pending!.assembler.finish()))
                    pending = nil
                }
            default:
                throw ProtocolError(code: .malformedChunk, message: "unexpected message in a stage stream")
            }
        }
        if pending != nil { throw ProtocolError(code: .malformedChunk, message: "stage input cut short") }
        return .inputs(inputs)
    }
}
