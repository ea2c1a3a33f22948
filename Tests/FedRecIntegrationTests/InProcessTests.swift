import FedRecClient
@testable import FedRecCoordinator
import FedRecFederation
import FedRecModel
import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Foundation
import GRPCCore
import GRPCInProcessTransport
import Logging
import Testing

/// An `Enrol` proof of `identity` for the challenge `nonce`, as a client process makes it.
func enrolmentProof(_ identity: Identity, nonce: [UInt8], coordinator: PublicIdentity) throws -> Fedrec_V1_ClientProof {
    let signature = try EnrolmentTranscript.sign(challenge: nonce, identity: identity, coordinator: coordinator)
    return .with {
        $0.clientID = identity.name
        $0.ed25519PublicKey = Data(identity.signing.publicKey.rawRepresentation)
        $0.x25519PublicKey = Data(identity.keyAgreement.publicKey.rawRepresentation)
        $0.signature = Data(signature)
    }
}

@Suite("Coordinator and clients in-process (InProcessTransport)")
struct InProcessTests {
    @Test("a client process with every user trains three rounds; state is saved and a new coordinator resumes from it")
    func roundsAndResume() async throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        // One in-process transport connects one client process; it hosts every user as a virtual client.
        let (coordinator, clients) = try await fixture.trainInProcess(fixture.coordinatorOptions(rounds: 3))
        #expect(clients.clientIDs.count == fixture.userIDs.count)
        #expect(coordinator.core.completedRounds == 3)
        let records = coordinator.core.records
        #expect(records.map(\.round) == [0, 1, 2])
        #expect(records.allSatisfy { $0.participants == fixture.userIDs.count && $0.recallAt20 != nil })
        #expect(records.allSatisfy { $0.meanLoss.isFinite && $0.bytesReceived > 0 && $0.bytesSent > 0 })
        #expect(clients.acceptedUpdates == 3 * fixture.userIDs.count)
        #expect(coordinator.core.rejections.isEmpty)
        // The client process was told training is over, which ends the coordinator's linger at once.
        #expect(coordinator.core.everyClientToldFinished)
        // Round 0's assignment came through a GetRound poll; later ones in the answer to the previous round's
        // upload (a poll only if the coordinator took longer than the poll's wait to open the round).
        let deliveries = coordinator.core.roundDeliveryCounts
        #expect(deliveries.inline >= 1 && deliveries.inline + deliveries.polled == 3, "\(deliveries)")

        let saved = try #require(try StateStore(directory: fixture.state).load())
        #expect(saved.completedRounds == 3 && saved.nextRound == 3 && saved.rounds.count == 3)
        #expect(saved.enrolled.count == fixture.userIDs.count)

        // Another item-tower optimizer cannot take over the saved one's moments: the state is refused, untouched.
        var otherItemStep = fixture.coordinatorOptions(rounds: 5)
        otherItemStep.itemOptimizer = .adam(learningRate: 0.02)
        #expect {
            _ = try CoordinatorBuilder.build(options: otherItemStep, transport: InProcessTransport().server)
        } throws: { ($0 as? CoordinatorError)?.code == .state && "\($0)".contains("belongs to another run") }
        let kept = try #require(try StateStore(directory: fixture.state).load())
        #expect(kept.runFingerprint == saved.runFingerprint && kept.completedRounds == 3)

        // Asking for 5 rounds with the same state continues at round 3.
        let (resumed, _) = try await fixture.trainInProcess(fixture.coordinatorOptions(rounds: 5))
        #expect(resumed.core.records.map(\.round) == [0, 1, 2, 3, 4])
        // Enrolled keys were restored: the resumed coordinator did not wait for fresh enrolment to know them.
        #expect(resumed.core.enrolledClients.count == fixture.userIDs.count)
    }

    @Test("an averaged run saves the average, checkpoints the raw weights, and resumes to the uninterrupted result")
    func averagedRunResumes() async throws {
        func train(_ fixture: Fixture, rounds: Int) async throws {
            var options = fixture.coordinatorOptions(rounds: rounds)
            options.averageDecay = 0.8
            options.averageWarmup = 2
            options.learningRateSchedule = .cosine(rounds: 4, warmup: 1, floor: 0.2)
            try await fixture.trainInProcess(options)
        }
        func saved(_ fixture: Fixture) throws -> (served: TwoTowerModel, raw: [String: [Float]]) {
            let state = try #require(try StateStore(directory: fixture.state).load())
            let served = try ModelFile.read(from: fixture.state + "/" + state.modelFile).model
            let raw = try SafeTensors.read(from: fixture.state + "/" + state.optimizerFile)
            var weights: [String: [Float]] = [:]
            for tensor in raw.tensors where tensor.name.hasPrefix("training.") {
                weights[String(tensor.name.dropFirst("training.".count))] = tensor.values
            }
            return (served, weights)
        }
        let straight = try Fixture(users: 6)
        defer { straight.remove() }
        try await train(straight, rounds: 4)
        let interrupted = try Fixture(users: 6)
        defer { interrupted.remove() }
        try await train(interrupted, rounds: 2)
        try await train(interrupted, rounds: 4)

        let a = try saved(straight)
        let b = try saved(interrupted)
        // The file holds the average, not the raw weights, which the checkpoint keeps.
        #expect(Set(a.raw.keys) == Set(a.served.namedParameters.map(\.name)))
        #expect(a.served.namedParameters.contains { a.raw[$0.name]! != $0.value.storage })
        func close(_ x: [Float], _ y: [Float]) -> Bool {
            x.count == y.count && zip(x, y).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }
        }
        for (name, _, value) in a.served.namedParameters {
            let other = try #require(b.served.namedParameters.first { $0.name == name })
            #expect(close(value.storage, other.value.storage), "served \(name) differs after resuming")
            #expect(close(a.raw[name]!, b.raw[name]!), "raw \(name) differs after resuming")
        }
    }

    /// A process hosting more users than the allow-list names: the listed ones enrol and train, the others are
    /// refused one by one (the whole request was refused once, and the client reported the coordinator unreachable).
    @Test("a process hosting users off the allow-list trains the listed ones")
    func partialAllowList() async throws {
        let fixture = try Fixture(users: 8)
        defer { fixture.remove() }
        let lines = try String(contentsOfFile: fixture.allowList, encoding: .utf8).split(separator: "\n")
        try (lines.prefix(3).joined(separator: "\n") + "\n").write(
            toFile: fixture.allowList, atomically: true, encoding: .utf8)
        var options = fixture.coordinatorOptions(rounds: 1)
        options.evaluationInterval = 0
        let (coordinator, clients) = try await fixture.trainInProcess(options)
        #expect(coordinator.core.records.map(\.participants) == [3])
        #expect(clients.clientIDs.count == 8)
    }

    @Test("a client process whose clock is two minutes off the coordinator's retries, then stops saying so")
    func clockSkew() async throws {
        let fixture = try Fixture(users: 4)
        defer { fixture.remove() }
        let transport = InProcessTransport()
        let coordinator = try CoordinatorBuilder.build(
            options: fixture.coordinatorOptions(rounds: 1), transport: transport.server,
            wallClock: { PollStamper.wallMicroseconds() - 120_000_000 })
        var clientOptions = fixture.clientOptions(.first(100))
        clientOptions.connectTimeout = .seconds(1)  // refused stamps are retried this long
        let clients = try ClientBuilder.build(options: clientOptions, transport: transport.client)
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await coordinator.run() }
            let refusal = await #expect(throws: ClientError.self) { try await clients.run() }
            let message = refusal?.message ?? ""
            #expect(refusal?.code == .enrolmentRefused, "\(message)")
            #expect(message.contains("after the coordinator's clock") && message.contains("set the wrong clock"))
            group.cancelAll()
        }
        #expect(coordinator.core.rejections.contains { $0.code == "stalePoll" })
        #expect(coordinator.core.completedRounds == 0)
    }

    @Test("a SubmitUpdate call still open after the longest deadline plus a second is cut, with its metadata")
    func slowUploadIsCut() async throws {
        let fixture = try Fixture(users: 40)
        defer { fixture.remove() }
        var options = fixture.coordinatorOptions(rounds: 1)
        options.deadline = .milliseconds(500)  // the call time limit is the longest deadline plus a second
        let transport = InProcessTransport()
        let coordinator = try CoordinatorBuilder.build(options: options, transport: transport.server)
        let grpc = GRPCClient(transport: transport.client)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await coordinator.run() }
            group.addTask { try await grpc.runConnections() }
            let service = Fedrec_V1_Coordinator.Client(wrapping: grpc)
            // Nothing at all, and then a refused message every 0.3 s (up to 40, the allow-list's size). Left alone,
            // the first would end as an empty stream after 60 s and the second with its refusals after 12 s; only
            // the cut fails them as `deadlineExceeded` naming the limit (no wall-time bound: a loaded machine may
            // take long to start the coordinator).
            let message = try Wire.updateMessages(
                envelope: [UInt8](repeating: 7, count: 100), clientID: "user-x", round: 0, attempt: 0,
                proofKey: try SymmetricKey())
            let producers: [@Sendable (RPCWriter<Fedrec_V1_UpdateMessage>) async throws -> Void] = [
                { _ in try await Task.sleep(for: .seconds(60)) },
                { writer in
                    for _ in 0..<40 {
                        try await writer.write(contentsOf: message)
                        try await Task.sleep(for: .milliseconds(300))
                    }
                },
            ]
            for (index, producer) in producers.enumerated() {
                let cut = try #require(
                    await #expect(throws: RPCError.self) {
                        _ = try await service.submitUpdate(requestProducer: producer)
                    })
                #expect(
                    cut.code == .deadlineExceeded && cut.message.contains("still open after 1.5 seconds"),
                    "producer \(index): \(cut.message)")
                #expect(Array(cut.metadata[stringValues: Wire.acceptedMetadataKey]) == ["0"])
                if index == 1 {
                    let refused = cut.metadata[binaryValues: Wire.refusedMetadataKey].map { Array($0) }
                    #expect(refused.count >= 2 && refused.allSatisfy { $0 == Array("user-x".utf8) }, "\(cut)")
                }
            }
            grpc.beginGracefulShutdown()
            group.cancelAll()
        }
        #expect(coordinator.core.rejections.filter { $0.code == "stalledStream" }.count == 2)
    }

    @Test("an invalid update that leaves its attempt too short is refused and recorded; the retry then closes")
    func invalidUpdateEndingAnAttemptIsRefused() async throws {
        let fixture = try Fixture(users: 4)
        defer { fixture.remove() }
        let (a, b) = (Wire.clientID(forUser: fixture.userIDs[0]), Wire.clientID(forUser: fixture.userIDs[1]))
        var options = fixture.coordinatorOptions(rounds: 1)
        options.waitForClients = 2
        options.minimumClients = 2
        options.maximumDeltaNorm = 1
        options.evaluationInterval = 0
        options.finishLinger = .seconds(5)
        let transport = InProcessTransport()
        let coordinator = try CoordinatorBuilder.build(options: options, transport: transport.server)
        let grpc = GRPCClient(transport: transport.client)
        let pinned = try KeyFiles.loadPublicIdentity(path: fixture.keys + "/coordinator.pub")
        let identities = try [a, b].map { try KeyFiles.loadIdentity(path: fixture.keys + "/\($0).key") }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await coordinator.run() }
            group.addTask { try await grpc.runConnections() }
            let service = Fedrec_V1_Coordinator.Client(wrapping: grpc)
            let challenge = try await service.getChallenge(.init())
            let nonce = Array(challenge.nonce)
            let enrolment = try await service.enrol(
                .with {
                    $0.challenge = Data(nonce)
                    $0.clients = try identities.map { try enrolmentProof($0, nonce: nonce, coordinator: pinned) }
                })
            #expect(Set(enrolment.accepted) == [a, b])
            let stamper = PollStamper()
            let transmitKeys = try identities.map {
                try $0.keyAgreement.clientSessionKeys(serverPublicKey: pinned.keyAgreementKey).transmit
            }
            /// Polls until the round is at `attempt` (nil: until training is over); returns its header.
            func poll(attempt: UInt32?) async throws -> Fedrec_V1_RoundHeader? {
                while true {
                    var request = Fedrec_V1_RoundRequest.with {
                        $0.clientIds = [a, b]
                        $0.waitMilliseconds = 200
                        $0.stamp = stamper.next()
                    }
                    request.proofs = try PollRequest(request).proofs(keys: transmitKeys)
                    let (header, finished) = try await service.getRound(request) { response in
                        var found: (Fedrec_V1_RoundHeader?, Bool) = (nil, false)
                        for try await message in response.messages {
                            if case .header(let h)? = message.part { found.0 = h }
                            if case .finished? = message.part { found.1 = true }
                        }
                        return found
                    }
                    if attempt == nil, finished { return nil }
                    if let header, header.attempt == attempt { return header }
                }
            }
            let layout = ParameterLayout.userTower(
                try JSONDecoder().decode(
                    TwoTowerConfiguration.self, from: Data(enrolment.modelConfigurationJson.utf8)))
            func submit(_ identity: Identity, value: Float, round: Int, attempt: Int) async throws {
                let keys = try identity.keyAgreement.clientSessionKeys(serverPublicKey: pinned.keyAgreementKey)
                let shape = layout.entries[0].shape
                let update = ClientUpdate(
                    userTowerDelta: [Float](repeating: value, count: layout.count),
                    itemEmbeddingGradient: .dense(Matrix(rows: shape[0], columns: shape[1], repeating: 0.01)),
                    exampleCount: 3, meanLoss: 2)
                let envelope = try Envelope.seal(
                    ClientUpdatePayload.encode(update),
                    header: EnvelopeHeader(
                        kind: .modelUpdate, round: UInt64(round), sequence: UInt64(attempt), clientID: identity.name),
                    using: keys.transmit
                ).serialized
                let messages = try Wire.updateMessages(
                    envelope: envelope, clientID: identity.name, round: round, attempt: attempt,
                    proofKey: keys.transmit)
                _ = try await service.submitUpdate(requestProducer: { try await $0.write(contentsOf: messages) })
            }

            let first = try #require(try await poll(attempt: 0))
            let round = Int(first.round)
            try await submit(identities[0], value: 0.001, round: round, attempt: 0)
            // b's delta exceeds the norm bound (the validator's check, past decoding): b is excluded, which leaves
            // attempt 0 with one update of the two needed.
            let refusal = try #require(
                await #expect(throws: RPCError.self) {
                    try await submit(identities[1], value: 0.5, round: round, attempt: 0)
                })
            #expect(refusal.message.contains("normTooLarge"), "\(refusal)")
            #expect(Wire.takenClients(written: [b], failure: refusal.metadata).isEmpty)
            // The retry takes both genuine updates and closes the round.
            _ = try #require(try await poll(attempt: 1))
            try await submit(identities[0], value: 0.001, round: round, attempt: 1)
            try await submit(identities[1], value: 0.002, round: round, attempt: 1)
            _ = try await poll(attempt: nil)
            grpc.beginGracefulShutdown()
            try await group.waitForAll()
        }
        #expect(coordinator.core.completedRounds == 1)
        #expect(coordinator.core.records.first?.attempt == 1 && coordinator.core.records.first?.participants == 2)
        let refused = try #require(coordinator.core.rejections.first { $0.code == "normTooLarge" })
        #expect(refused.client == b && refused.round == 0)
    }

    @Test("tampered, replayed, unenrolled and unproven messages and polls are each refused while the round goes on")
    func refusals() async throws {
        let fixture = try Fixture(users: 6)
        defer { fixture.remove() }
        // Only two allow-listed clients take part; the test speaks for them with the raw generated client.
        let (a, b) = (Wire.clientID(forUser: fixture.userIDs[0]), Wire.clientID(forUser: fixture.userIDs[1]))
        var options = fixture.coordinatorOptions(rounds: 1)
        options.waitForClients = 2
        options.evaluationInterval = 0
        // The test polls for `finished` itself; on a loaded machine 0.5 s of lingering could close the server
        // before its next poll arrives.
        options.finishLinger = .seconds(5)
        let transport = InProcessTransport()
        let coordinator = try CoordinatorBuilder.build(options: options, transport: transport.server)
        let grpc = GRPCClient(transport: transport.client)
        let pinned = try KeyFiles.loadPublicIdentity(path: fixture.keys + "/coordinator.pub")
        let identities = try [a, b].map { try KeyFiles.loadIdentity(path: fixture.keys + "/\($0).key") }
        let stranger = try Identity.generate(name: "user-stranger")

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await coordinator.run() }
            group.addTask { try await grpc.runConnections() }
            let service = Fedrec_V1_Coordinator.Client(wrapping: grpc)

            // Unenrolled: a key that is not on the allow-list cannot enrol.
            let challenge = try await service.getChallenge(.init())
            #expect(challenge.coordinatorIdentity == pinned.line)
            func proof(_ identity: Identity, _ nonce: [UInt8]) throws -> Fedrec_V1_ClientProof {
                try enrolmentProof(identity, nonce: nonce, coordinator: pinned)
            }
            let nonce = Array(challenge.nonce)
            let response = try await service.enrol(
                .with {
                    $0.challenge = Data(nonce)
                    $0.clients = try! [
                        proof(identities[0], nonce), proof(identities[1], nonce), proof(stranger, nonce),
                    ]
                })
            #expect(Set(response.accepted) == [a, b])
            #expect(response.rejected.map(\.clientID) == ["user-stranger"])
            // A used challenge cannot be replayed.
            await #expect(throws: RPCError.self) {
                _ = try await service.enrol(
                    .with {
                        $0.challenge = Data(nonce)
                        $0.clients = try! [proof(identities[0], nonce)]
                    })
            }

            // Polls carry a fresh stamp and a proof by every client they name.
            let stamper = PollStamper()
            var transmitKeys: [String: SymmetricKey] = [:]
            for identity in identities + [stranger] {
                transmitKeys[identity.name] =
                    try identity.keyAgreement.clientSessionKeys(serverPublicKey: pinned.keyAgreementKey).transmit
            }
            func proved(_ request: Fedrec_V1_RoundRequest) throws -> Fedrec_V1_RoundRequest {
                var request = request
                if request.stamp == 0 { request.stamp = stamper.next() }
                request.proofs = try PollRequest(request).proofs(keys: request.clientIds.map { transmitKeys[$0]! })
                return request
            }
            func poll(_ request: Fedrec_V1_RoundRequest) async throws {
                try await service.getRound(request) { response in for try await _ in response.messages {} }
            }

            // Wait for the round.
            var header: Fedrec_V1_RoundHeader? = nil
            while header == nil {
                let answer = try await service.getRound(
                    try proved(
                        .with {
                            $0.clientIds = [a, b]
                            $0.waitMilliseconds = 200
                        })
                ) { response in
                    var found: Fedrec_V1_RoundHeader? = nil
                    for try await message in response.messages { if case .header(let h)? = message.part { found = h } }
                    return found
                }
                header = answer
            }
            let round = Int(header!.round)
            #expect(Set(header!.selected) == [a, b])
            // An assignment larger than the asked bound (an upload's answer carries at most 3 MiB) is neither
            // sealed nor counted: the poll made by the upload's next-round request comes back empty.
            let sentBefore = coordinator.core.traffic().sent
            let bounded = try coordinator.core.assignment(
                for: [a, b], lastEpoch: 0, lastRound: 0, lastAttempt: 0, maximumLength: 1_000)
            guard case .tooLarge = bounded else {
                Issue.record("a 1,000-byte bound gave \(bounded)")
                return
            }
            #expect(coordinator.core.traffic().sent == sentBefore)

            // Unauthenticated polls are refused and recorded, and the round goes on: one without proofs (GetRound
            // and GetStage), one whose proofs are swapped, one proved by a key that is not enrolled, a replay of a
            // taken poll, and one stamped two minutes ago.
            let handled = try proved(
                .with {
                    $0.clientIds = [a, b]
                    $0.lastEpoch = header!.epoch
                    $0.lastRound = header!.round
                })
            try await poll(handled)  // taken: answers `wait` at once (no newer round)
            var swapped = try proved(.with { $0.clientIds = [a, b] })
            swapped.proofs.swapAt(0, 1)
            let stale = try proved(
                .with {
                    $0.clientIds = [a, b]
                    $0.stamp = PollStamper.wallMicroseconds() - 120_000_000
                })
            let refusedPolls: [(Fedrec_V1_RoundRequest, RPCError.Code, String)] = [
                (.with { $0.clientIds = [a, b] }, .unauthenticated, "carries 0 proof(s) for 2 client(s)"),
                (swapped, .unauthenticated, "proof does not authenticate"),
                (try proved(.with { $0.clientIds = [stranger.name] }), .permissionDenied, "not enrolled"),
                (handled, .failedPrecondition, "already taken (a replay)"),
                // 120 s, or more when this machine is slow to send it: only the wording is fixed.
                (stale, .outOfRange, " s before the coordinator's clock"),
            ]
            for (request, code, message) in refusedPolls {
                let refusal = try #require(await #expect(throws: RPCError.self) { try await poll(request) })
                #expect(refusal.code == code && refusal.message.contains(message), "\(refusal)")
            }
            let unprovenStage = try #require(
                await #expect(throws: RPCError.self) {
                    try await service.getStage(.with { $0.clientIds = [a] }) { response in
                        for try await _ in response.messages {}
                    }
                })
            #expect(unprovenStage.code == .unauthenticated, "\(unprovenStage)")

            func sealedUpdate(_ identity: Identity, sequence: UInt64 = 0) throws -> [UInt8] {
                let keys = try identity.keyAgreement.clientSessionKeys(serverPublicKey: pinned.keyAgreementKey)
                let layout = ParameterLayout.userTower(
                    try JSONDecoder().decode(
                        TwoTowerConfiguration.self, from: Data(response.modelConfigurationJson.utf8)))
                let items = layout.entries[0].shape[0]
                let d = layout.entries[0].shape[1]
                let update = ClientUpdate(
                    userTowerDelta: [Float](repeating: 0.001, count: layout.count),
                    itemEmbeddingGradient: .dense(Matrix(rows: items, columns: d, repeating: 0.01)), exampleCount: 3,
                    meanLoss: 2)
                return try Envelope.seal(
                    ClientUpdatePayload.encode(update),
                    header: EnvelopeHeader(
                        kind: .modelUpdate, round: UInt64(round), sequence: sequence, clientID: identity.name),
                    using: keys.transmit
                ).serialized
            }
            /// The key a sender proves its headers with: the client's own, or one no client has.
            let unknownKey = try SymmetricKey()
            func key(_ client: String) -> SymmetricKey { transmitKeys[client] ?? unknownKey }
            func submit(_ envelope: [UInt8], as client: String) async throws {
                let messages = try Wire.updateMessages(
                    envelope: envelope, clientID: client, round: round, attempt: 0, proofKey: key(client))
                _ = try await service.submitUpdate(requestProducer: { try await $0.write(contentsOf: messages) })
            }

            // A flood of 150 malformed streams first (the round goes on): envelopes with bits flipped, chunks cut
            // short or grown, impossible plans, chunks without headers, unknown senders. Each is refused on its
            // own and recorded; none of them opens or consumes a sequence number.
            var rng = SplitMix64(seed: 11)
            let template = try sealedUpdate(identities[1], sequence: 1_000)
            let rejectionsBefore = coordinator.core.rejectionCount
            for index in 0..<150 {
                var envelope = template
                for _ in 0...(rng.next() % 4) {
                    let at = Int(rng.next() % UInt64(envelope.count))
                    envelope[at] ^= UInt8(1) << UInt8(rng.next() % 8)
                }
                let sender = [a, b, stranger.name, "user-\(rng.next() % 1_000)"][index % 4]
                var messages = try Wire.updateMessages(
                    envelope: envelope, clientID: sender, round: round, attempt: 0, proofKey: key(sender))
                switch index % 5 {
                case 0: break  // tampered envelope
                case 1: messages[1].data.data = messages[1].data.data.dropLast(1 + Int(rng.next() % 100))  // cut
                case 2: messages[0].header.payload.totalLength = 1 << 40  // oversized plan
                case 3: messages.remove(at: 0)  // chunks without a header
                default: messages[1].data.data.append(contentsOf: [1, 2, 3])  // grown
                }
                let flood = messages
                await #expect(throws: RPCError.self, "flood message \(index)") {
                    _ = try await service.submitUpdate(requestProducer: { try await $0.write(contentsOf: flood) })
                }
            }
            #expect(coordinator.core.rejectionCount - rejectionsBefore == 150)
            // A header naming a client id no envelope can carry (over 255 bytes) breaks the stream off at once: such
            // ids are not kept in the call's list of refused clients.
            var longID = try Wire.updateMessages(
                envelope: template, clientID: b, round: round, attempt: 0, proofKey: key(b))
            longID[0].header.clientID = String(repeating: "x", count: 1 << 20)
            let overlongID = longID
            let idRefusal = try #require(
                await #expect(throws: RPCError.self) {
                    _ = try await service.submitUpdate(requestProducer: { try await $0.write(contentsOf: overlongID) })
                })
            #expect(idRefusal.message.contains("client id of 1048576 bytes (1...255 allowed)"), "\(idRefusal.message.prefix(300))")
            #expect(idRefusal.metadata[binaryValues: Wire.refusedMetadataKey].map(\.count).allSatisfy { $0 <= 255 })
            let valid = try sealedUpdate(identities[0])
            // Tampered: one ciphertext bit flipped (the chunk digest is recomputed, so only the AEAD tag catches it).
            var tampered = valid
            tampered[tampered.count - 30] ^= 0x01
            await #expect(throws: RPCError.self) { try await submit(tampered, as: a) }
            // Unenrolled sender.
            let strangerKeys = try stranger.keyAgreement.clientSessionKeys(serverPublicKey: pinned.keyAgreementKey)
            let strangerEnvelope = try Envelope.seal(
                [1, 2, 3],
                header: EnvelopeHeader(kind: .modelUpdate, round: UInt64(round), sequence: 0, clientID: stranger.name),
                using: strangerKeys.transmit
            ).serialized
            await #expect(throws: RPCError.self) { try await submit(strangerEnvelope, as: stranger.name) }
            // A stream longer than the allow-list breaks off at the message one past it; the messages before it are
            // refused (tampered) and listed, and so is that one, whose header was read.
            let listed = fixture.userIDs.count
            let overlong = try (0...listed).flatMap { _ in
                try Wire.updateMessages(envelope: tampered, clientID: a, round: round, attempt: 0, proofKey: key(a))
            }
            let cut = try #require(
                await #expect(throws: RPCError.self) {
                    _ = try await service.submitUpdate(requestProducer: { try await $0.write(contentsOf: overlong) })
                })
            #expect(cut.message.hasPrefix("malformedChunk"), "\(cut)")
            #expect(cut.message.contains("at most one message per allow-listed client (\(listed))"), "\(cut)")
            #expect(Array(cut.metadata[stringValues: Wire.acceptedMetadataKey]) == ["0"])
            #expect(Array(cut.metadata[binaryValues: Wire.refusedMetadataKey]).count == listed + 1)
            // Polls naming more clients than the allow-list holds are refused before any work.
            let crowd = (0...listed).map { "user-\($0)" }
            let crowdedRound = try #require(
                await #expect(throws: RPCError.self) {
                    try await service.getRound(.with { $0.clientIds = crowd }) { response in
                        for try await _ in response.messages {}
                    }
                })
            let crowdedStage = try #require(
                await #expect(throws: RPCError.self) {
                    try await service.getStage(.with { $0.clientIds = crowd }) { response in
                        for try await _ in response.messages {}
                    }
                })
            for refusal in [crowdedRound, crowdedStage] {
                #expect(refusal.code == .resourceExhausted, "\(refusal)")
                #expect(refusal.message.contains("names \(listed + 1) clients; the allow-list has \(listed)"))
            }
            // An update sealed for another attempt of this round (sequence 1; the round is at attempt 0) is refused
            // without moving the replay guard: the attempt-0 update below is still taken.
            let otherAttempt = try sealedUpdate(identities[0], sequence: 1)
            let wrongAttempt = try #require(
                await #expect(throws: RPCError.self) { try await submit(otherAttempt, as: a) })
            #expect(wrongAttempt.code == .failedPrecondition, "\(wrongAttempt)")
            #expect(
                wrongAttempt.message.contains("update of attempt 1, round \(round) is at attempt 0"), "\(wrongAttempt)")
            // A sender without a's key names a and stalls: its header's proof does not authenticate, so it does not
            // take a's place (before header proofs it did, and a's genuine update below was refused `unavailable`).
            let squat = [try Wire.updateMessages(envelope: valid, clientID: a, round: round, attempt: 0, proofKey: unknownKey)[0]]
            let squatter = Task {
                _ = try? await service.submitUpdate(requestProducer: { writer in
                    try await writer.write(contentsOf: squat)
                    try await Task.sleep(for: .seconds(3))
                })
            }
            try await Task.sleep(for: .milliseconds(300))
            // A next-round request may only end a stream of client messages: alone, or followed by anything, it
            // breaks the stream off.
            let nextRound = try proved(
                .with {
                    $0.clientIds = [a, b]
                    $0.lastEpoch = header!.epoch
                    $0.lastRound = header!.round
                })
            let lone = try #require(
                await #expect(throws: RPCError.self) {
                    _ = try await service.submitUpdate(requestProducer: {
                        try await $0.write(.with { $0.nextRound = nextRound })
                    })
                })
            #expect(lone.message.contains("a next-round request may only end a stream of client messages"), "\(lone)")
            // The genuine update is accepted, its replay refused. Its stream ends with a next-round request for b
            // proved with a's key: the request is refused and recorded (naming b), the update taken, and the answer
            // carries no assignment (the caller would poll GetRound).
            var unproven = nextRound
            unproven.clientIds = [b]
            unproven.stamp = stamper.next()
            unproven.proofs = try PollRequest(unproven).proofs(keys: [transmitKeys[a]!])
            let genuine =
                try Wire.updateMessages(envelope: valid, clientID: a, round: round, attempt: 0, proofKey: key(a))
                + [.with { $0.nextRound = unproven }]
            func unprovenForB() -> Int {
                coordinator.core.rejections.filter { $0.client == b && $0.message.contains("proof does not authenticate") }
                    .count
            }
            let before = unprovenForB()
            let taken = try await service.submitUpdate(requestProducer: { try await $0.write(contentsOf: genuine) })
            #expect(taken.accepted && taken.nextRound.isEmpty, "\(taken)")
            #expect(unprovenForB() == before + 1)
            await squatter.value
            await #expect(throws: RPCError.self) { try await submit(valid, as: a) }
            // One stream carrying a's replay, then b's update (as a process sends its clients' updates), then a
            // stray chunk: the replay is refused, b's update taken, and the stream breaks off at the chunk. The
            // call names both problems and counts b's update as taken; the round closes with it.
            let batch =
                try Wire.updateMessages(envelope: valid, clientID: a, round: round, attempt: 0, proofKey: key(a))
                + Wire.updateMessages(
                    envelope: try sealedUpdate(identities[1]), clientID: b, round: round, attempt: 0, proofKey: key(b))
                + [.with { $0.nextRound = nextRound }]
                + [.with { $0.data = .with { $0.index = 0 } }]
            let refusal = await #expect(throws: RPCError.self) {
                _ = try await service.submitUpdate(requestProducer: { try await $0.write(contentsOf: batch) })
            }
            let refused = try #require(refusal)
            #expect(refused.code == .invalidArgument, "\(refused)")
            #expect(
                refused.message.contains("a next-round request may only end") && refused.message.contains(a),
                "\(refused)")
            #expect(Array(refused.metadata[stringValues: Wire.acceptedMetadataKey]) == ["1"])
            let refusedIDs = refused.metadata[binaryValues: Wire.refusedMetadataKey].map {
                String(decoding: $0, as: UTF8.self)
            }
            #expect(refusedIDs == [a])
            #expect(Wire.takenClients(written: [a, b], failure: refused.metadata) == [b])
            // Training is over: the coordinator says so.
            var finished = false
            while !finished {
                finished = try await service.getRound(
                    try proved(
                        .with {
                            $0.clientIds = [a, b]
                            $0.waitMilliseconds = 200
                            $0.lastEpoch = header!.epoch
                            $0.lastRound = header!.round
                        })
                ) { response in
                    for try await message in response.messages { if case .finished? = message.part { return true } }
                    return false
                }
            }
            let status = try await service.status(.init())
            #expect(status.completedRounds == 1 && status.enrolled == 2 && status.rounds.first?.participants == 2)
            grpc.beginGracefulShutdown()
            try await group.waitForAll()
        }
        #expect(coordinator.core.completedRounds == 1)
        #expect(coordinator.core.records.first?.participants == 2)
        let codes = coordinator.core.rejections.map(\.code)
        #expect(codes.contains("enrolmentRefused"))
        // The refusal names the id that was not allow-listed, not the request's first (allow-listed) one.
        let unlisted = try #require(coordinator.core.rejections.first { $0.code == "enrolmentRefused" && $0.round == nil })
        #expect(unlisted.client?.contains("user-stranger") == true, "\(unlisted)")
        #expect(codes.contains("authenticationFailed"))
        #expect(codes.contains("notEnrolled"))
        #expect(codes.contains("replayed"))
        #expect(codes.contains("stalePoll"))
        // Refusals name the client and the round.
        let tamper = try #require(
            coordinator.core.rejections.first { $0.code == "authenticationFailed" && $0.round != nil })
        #expect(tamper.client == a && tamper.round == 0)
    }
}
