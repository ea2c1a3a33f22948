@testable import FedRecFederation
import FedRecSecurity
import FedRecTensor
import PropertyBased
import Synchronization
import Testing

@Suite struct SecureAggregationRoundTests {
    /// Random cohorts, graphs (complete or Harary, random k and t) and dropout sets at every stage: the round
    /// either yields exactly the wrapping sum of the survivors' words (every mask cancelled or removed) or aborts
    /// with `roundAborted`; most draws complete.
    @Test func masksCancelForRandomGraphsAndDropouts() async throws {
        let completed = Mutex(0)
        let runs = 40
        await propertyCheck(count: runs, input: Gen.int(in: 3...13), Gen.int(in: 1...24), Gen.int(in: 0...1_000_000)) {
            n, length, seed in
            var rng = SplitMix64(seed: UInt64(seed))
            // k: complete graph or an even Harary degree >= 4; t in (k/2, k), or k when nothing else fits.
            let shapes = [n - 1] + stride(from: 4, through: n - 2, by: 2).map { $0 }
            let k = shapes[Int(rng.next() % UInt64(shapes.count))]
            let t = min(k, k / 2 + 1 + Int(rng.next() % UInt64(max(1, k - k / 2 - 1))))
            var round = try SecAggRound(
                participants: n, vectorLength: length, neighbourCount: k, threshold: t, seed: UInt64(seed))
            let inputs = (0..<n).map { _ in (0...length).map { _ in UInt32(truncatingIfNeeded: rng.next()) } }
            let rate = rng.next() % 4  // each client drops at each stage with probability rate / 24
            func draw() -> Set<Int> { Set((0..<n).filter { _ in rng.next() % 24 < rate }) }
            let dropouts = SecAggDropouts(advertiseKeys: draw(), shareKeys: draw(), maskedInput: draw(), unmask: draw())
            do {
                let aggregate = try round.run(encoded: inputs, dropouts: dropouts)
                #expect(aggregate.encodedSum == secAggWrappingSum(inputs, members: aggregate.survivors))
                let silentBefore = dropouts.advertiseKeys.union(dropouts.shareKeys).union(dropouts.maskedInput)
                #expect(silentBefore.isDisjoint(with: aggregate.survivors))
                // Survivors, clients dropped before stage 4, and excluded clients partition the cohort; survivors
                // that missed only stage 4 are listed as dropped at `.unmask`.
                let early = aggregate.dropped.filter { $0.value < .unmask }.map(\.key)
                let all = Set(aggregate.survivors).union(early).union(aggregate.excluded.keys)
                #expect(all == Set(0..<n))
                #expect(aggregate.survivors.count + early.count + aggregate.excluded.count == n)
                for (index, stage) in aggregate.dropped where stage == .unmask {
                    #expect(aggregate.survivors.contains(index) && dropouts.unmask.contains(index))
                }
                // Nobody who stayed throughout is missing from the sum unless the server excluded them.
                for index in 0..<n where !silentBefore.contains(index) && aggregate.excluded[index] == nil {
                    #expect(aggregate.survivors.contains(index))
                }
                #expect(round.serverRejections.isEmpty)
                #expect(round.clientErrors.isEmpty)
                completed.withLock { $0 += 1 }
            } catch let error as SecureAggregationError {
                #expect(error.code == .roundAborted, "\(error)")
                let anyDropout = [dropouts.advertiseKeys, dropouts.shareKeys, dropouts.maskedInput, dropouts.unmask]
                    .contains { !$0.isEmpty }
                #expect(anyDropout, "a round without dropouts aborted: \(error)")
            }
        }
        // A quarter of the draws have no dropout at all and must complete (checked above), so at least one
        // completes unless all 40 draws picked a dropout rate (probability (3/4)^40 < 1e-5).
        #expect(completed.withLock { $0 } >= 1)
    }

    @Test func completeGraphWithoutDropoutsSumsExactly() throws {
        var round = try SecAggRound(participants: 5, vectorLength: 7, seed: 11)
        #expect(round.parameters.neighbourCount == 4)
        var rng = SplitMix64(seed: 1)
        let inputs = (0..<5).map { _ in (0..<8).map { _ in UInt32(truncatingIfNeeded: rng.next()) } }
        let aggregate = try round.run(encoded: inputs)
        #expect(aggregate.survivors == [0, 1, 2, 3, 4])
        #expect(aggregate.encodedSum == secAggWrappingSum(inputs, members: [0, 1, 2, 3, 4]))
        #expect(aggregate.dropped.isEmpty && aggregate.excluded.isEmpty && aggregate.rejections.isEmpty)
    }

    /// The masked words reveal nothing obvious: a client's masked input differs from its encoded input in
    /// (almost) every word.
    @Test func maskedInputHidesTheInput() throws {
        var round = try SecAggRound(participants: 4, vectorLength: 255, seed: 3)
        let zeros = [UInt32](repeating: 0, count: 256)
        var captured: [MaskedInput] = []
        _ = try round.run(dropouts: .init(), hooks: .init()) { client, index, inbox in
            let masked = try client.maskedInput(encoded: zeros, shares: inbox)
            captured.append(masked)
            return masked
        }
        for masked in captured { #expect(masked.words.filter { $0 == 0 }.count < 4) }
    }

    /// Plain weighted FedAvg over the survivors, in Double, against the SecAgg+ mean; with dropouts at stage
    /// 3 and 4, and a moderate vector.
    @Test func aggregateEqualsWeightedFedAvg() throws {
        let (n, length, clip, maxWeight): (Int, Int, Float, Float) = (16, 3000, 1, 500)
        var round = try SecAggRound(
            participants: n, vectorLength: length, clipRange: clip, maximumWeight: maxWeight, seed: 77)
        var rng = SplitMix64(seed: 77)
        let values = (0..<n).map { _ in (0..<length).map { _ in (rng.nextUnitFloat() * 2 - 1) * 0.9 } }
        let weights = (0..<n).map { _ in Float(1 + rng.next() % 400) }
        let aggregate = try round.run(
            values: values, weights: weights, dropouts: SecAggDropouts(maskedInput: [3, 9], unmask: [5]))
        #expect(aggregate.survivors == (0..<n).filter { ![3, 9].contains($0) })
        var referenceSum = [Double](repeating: 0, count: length)
        var referenceWeight = 0.0
        for member in aggregate.survivors {
            referenceWeight += Double(weights[member])
            for i in 0..<length { referenceSum[i] += Double(weights[member]) * Double(values[member][i]) }
        }
        let quantizer = round.parameters.quantizer
        let m = Double(aggregate.survivors.count)
        #expect(abs(aggregate.totalWeight - referenceWeight) <= m * quantizer.weightResolution * (1 + 1e-6))
        var errorNorm = 0.0
        var referenceNorm = 0.0
        for i in 0..<length {
            let sumError = abs(Double(aggregate.weightedSum[i]) - referenceSum[i])
            #expect(sumError <= m * quantizer.weightedSumResolution + abs(referenceSum[i]) * 1e-7)
            let referenceMean = referenceSum[i] / referenceWeight
            errorNorm += (Double(aggregate.mean[i]) - referenceMean) * (Double(aggregate.mean[i]) - referenceMean)
            referenceNorm += referenceMean * referenceMean
        }
        #expect((errorNorm / referenceNorm).squareRoot() <= 1e-4)
        for i in 0..<length {
            let reference = referenceSum[i] / referenceWeight
            #expect(abs(Double(aggregate.mean[i]) - reference) <= 1e-4 * max(abs(reference), 1e-2))
        }
    }

    /// A coordinator (or network) that flips a bit in a relayed share, or re-labels a share's sender: the
    /// recipient detects it, records and reports the sender, holds no share of it, and the round completes
    /// with the exact sum.
    @Test func tamperedShareIsDetectedAndRoundCompletes() throws {
        var round = try SecAggRound(participants: 8, vectorLength: 5, seed: 21)
        let neighbours = round.parameters.graph.neighbours(of: 2)
        let (victim, relabelVictim) = (neighbours[0], neighbours[1])
        var rng = SplitMix64(seed: 8)
        let inputs = (0..<8).map { _ in (0..<6).map { _ in UInt32(truncatingIfNeeded: rng.next()) } }
        var hooks = SecAggHooks()
        hooks.inboxes = { inboxes in
            let position = try #require(inboxes[victim]?.firstIndex { $0.sender == 2 })
            let share = inboxes[victim]![position]
            var bytes = share.box.combined
            bytes[40] ^= 0x01
            inboxes[victim]![position] = try EncryptedShare(
                round: share.round, sender: 2, recipient: victim, box: AEAD.SealedBox(combined: bytes))
            // Re-label: the share 2 sent to `relabelVictim` is passed off as coming from another neighbour of it.
            let other = try #require(inboxes[relabelVictim]?.firstIndex { $0.sender != 2 })
            let from2 = try #require(inboxes[relabelVictim]?.firstIndex { $0.sender == 2 })
            let impostor = inboxes[relabelVictim]![other].sender
            inboxes[relabelVictim]![other] = try EncryptedShare(
                round: share.round, sender: impostor, recipient: relabelVictim, box: inboxes[relabelVictim]![from2].box)
        }
        let aggregate = try round.run(encoded: inputs, hooks: hooks)
        #expect(aggregate.encodedSum == secAggWrappingSum(inputs, members: aggregate.survivors))
        #expect(aggregate.survivors == Array(0..<8))
        let victimRejections = round.clients[victim].rejections
        #expect(victimRejections.contains { $0.code == .tamperedShare && $0.client == 2 })
        #expect(round.clients[relabelVictim].rejections.contains { $0.code == .tamperedShare })
        #expect(aggregate.rejections.contains { $0.code == .tamperedShare && $0.client == 2 })
    }

    /// Responders that send wrong shares (of self-mask seeds, or of a dropped client's masking key). One liar
    /// among more than t holders: other t-subsets rebuild the secret that matches its commitment (or public key),
    /// the round completes with the exact sum, and the liar is named. More liars than k - t: no t right shares
    /// remain, and the round aborts naming the owner instead of returning a corrupted sum.
    @Test(arguments: [false, true])
    func wrongUnmaskSharesAreOutvotedOrAbort(pairwise: Bool) throws {
        for liars in [[1], [1, 2, 3, 4, 5]] {
            var round = try SecAggRound(participants: 8, vectorLength: 3, seed: 17)
            let inputs = [[UInt32]](repeating: [5, 6, 7, 8], count: 8)
            var hooks = SecAggHooks()
            hooks.response = { response in
                guard liars.contains(response.index) else { return }
                func corrupt(_ shares: [Int: SecureBytes]) -> [Int: SecureBytes] {
                    shares.mapValues { share in
                        var copy = share
                        copy.withUnsafeMutableBytes { $0[0] ^= 0x5A }
                        return copy
                    }
                }
                response = try UnmaskResponse(
                    round: response.round, index: response.index,
                    selfMaskShares: pairwise ? response.selfMaskShares : corrupt(response.selfMaskShares),
                    pairwiseMaskShares: pairwise ? corrupt(response.pairwiseMaskShares) : response.pairwiseMaskShares)
            }
            // Client 1 is the lowest-numbered holder of some neighbour's shares, so its share is always tried first.
            let dropped = try #require(round.parameters.graph.neighbours(of: 1).first { $0 != 0 && !liars.contains($0) })
            let dropouts = SecAggDropouts(maskedInput: pairwise ? [dropped] : [])
            if liars.count == 1 {
                let aggregate = try round.run(encoded: inputs, dropouts: dropouts, hooks: hooks)
                #expect(aggregate.encodedSum == secAggWrappingSum(inputs, members: aggregate.survivors))
                #expect(
                    aggregate.rejections.contains { $0.code == .invalidShares && $0.client == 1 },
                    "\(aggregate.rejections)")
            } else {
                let error = secAggError { _ = try round.run(encoded: inputs, dropouts: dropouts, hooks: hooks) }
                #expect(error?.code == .roundAborted && error?.stage == .unmask, "\(String(describing: error))")
                #expect(
                    error?.message.contains(pairwise ? "public key" : "commitment") == true,
                    "\(String(describing: error))")
            }
        }
    }

    /// A bad signature on advertised keys: the server refuses and excludes the sender; the round completes
    /// without it.
    @Test func badSignatureExcludesSender() throws {
        var round = try SecAggRound(participants: 8, vectorLength: 4, seed: 5)
        var rng = SplitMix64(seed: 9)
        let inputs = (0..<8).map { _ in (0..<5).map { _ in UInt32(truncatingIfNeeded: rng.next()) } }
        var hooks = SecAggHooks()
        hooks.advertised = { keys in
            guard keys.index == 6 else { return }
            var signature = keys.signature
            signature[10] ^= 0x80
            keys = try AdvertisedKeys(
                round: keys.round, index: 6, encryptionKey: keys.encryptionKey, maskingKey: keys.maskingKey,
                selfMaskCommitment: keys.selfMaskCommitment, signature: signature)
        }
        let aggregate = try round.run(encoded: inputs, hooks: hooks)
        #expect(aggregate.survivors == [0, 1, 2, 3, 4, 5, 7])
        #expect(aggregate.excluded[6]?.code == .invalidSignature)
        #expect(round.serverRejections.map(\.code) == [.invalidSignature])
        #expect(aggregate.encodedSum == secAggWrappingSum(inputs, members: aggregate.survivors))
    }

    /// A client that advertises a small-order X25519 key (here 32 zero bytes), correctly signed: no neighbour
    /// could exchange keys with it, so the coordinator excludes it at once (not its honest neighbours, who would
    /// each send one share too few) and the round completes with the others' exact sum.
    @Test(arguments: [false, true])
    func smallOrderAdvertisedKeyExcludesTheAdvertiser(masking: Bool) throws {
        var round = try SecAggRound(participants: 16, vectorLength: 4, seed: 23)
        var rng = SplitMix64(seed: 10)
        let inputs = (0..<16).map { _ in (0..<5).map { _ in UInt32(truncatingIfNeeded: rng.next()) } }
        let (digest, identity) = (try round.parameters.digest(), round.identities[3])
        var hooks = SecAggHooks()
        hooks.advertised = { keys in
            guard keys.index == 3 else { return }
            let zero = try KeyAgreementPublicKey(rawRepresentation: [UInt8](repeating: 0, count: 32))
            let (encryption, maskingKey) = masking ? (keys.encryptionKey, zero) : (zero, keys.maskingKey)
            let signature = try identity.signature(
                for: AdvertisedKeys.signedBytes(
                    parametersDigest: digest, index: 3, encryptionKey: encryption, maskingKey: maskingKey,
                    selfMaskCommitment: keys.selfMaskCommitment))
            keys = try AdvertisedKeys(
                round: keys.round, index: 3, encryptionKey: encryption, maskingKey: maskingKey,
                selfMaskCommitment: keys.selfMaskCommitment, signature: signature)
        }
        let aggregate = try round.run(encoded: inputs, hooks: hooks)
        #expect(aggregate.survivors == (0..<16).filter { $0 != 3 })
        #expect(aggregate.excluded[3]?.code == .invalidKey)
        #expect(round.serverRejections.map(\.code) == [.invalidKey])
        #expect(aggregate.encodedSum == secAggWrappingSum(inputs, members: aggregate.survivors))
        let zero = try KeyAgreementPublicKey(rawRepresentation: [UInt8](repeating: 0, count: 32))
        #expect(!zero.isUsableForKeyExchange)
        #expect(try KeyAgreementKey().publicKey.isUsableForKeyExchange)
    }

    /// A client whose inbox holds fewer than t authenticated shares (withheld, or replayed from another attempt)
    /// sends no masked input: with its self-mask alone, removed for every survivor, its input would be read.
    @Test func tooFewAuthenticatedSharesSendNoMaskedInput() throws {
        var round = try SecAggRound(participants: 8, vectorLength: 3, seed: 31)
        let inputs = [[UInt32]](repeating: [1, 2, 3, 4], count: 8)
        var hooks = SecAggHooks()
        let threshold = round.parameters.threshold
        hooks.inboxes = { inboxes in inboxes[5] = Array((inboxes[5] ?? []).prefix(threshold - 1)) }
        _ = try? round.run(encoded: inputs, hooks: hooks)
        #expect(round.clientErrors[5]?.code == .tooFewNeighbours, "\(round.clientErrors)")
        #expect(round.clientErrors[5]?.stage == .maskedInput)
    }

    /// A masked input whose masks do not cancel (here a survivor's weight word moved by 2^31) decodes to a total
    /// weight no survivors' quantised weights can have; an honest round's total is plausible. (The coordinator
    /// abandons the attempt on an implausible one instead of applying a random sum.)
    @Test func aSumWhoseMasksDoNotCancelHasAnImplausibleWeight() throws {
        for broken in [false, true] {
            var round = try SecAggRound(participants: 8, vectorLength: 3, seed: 41)
            let values = (0..<8).map { i in [Float(i) / 10, -0.5, 0.25] }
            let weights: [Float] = [3, 100, 7, 1, 50, 20, 9, 64]
            let aggregate = try round.run(dropouts: .init(), hooks: .init()) { client, index, inbox in
                let honest = try client.maskedInput(values[index], weight: weights[index], shares: inbox)
                guard broken, index == 2 else { return honest }
                var words = honest.words
                words[words.count - 1] &+= 1 << 31
                return try MaskedInput(round: honest.round, index: 2, words: words, rejectedSenders: [])
            }
            #expect(aggregate.hasPlausibleWeight(under: round.parameters) == !broken, "\(aggregate.totalWeight)")
        }
    }

    /// A coordinator that swaps a neighbour's keys in the roster: the client refuses that neighbour (bad
    /// signature) and shares only with the others.
    @Test func clientExcludesNeighbourWithForgedKeys() throws {
        var round = try SecAggRound(participants: 6, vectorLength: 3, seed: 14)
        var advertised: [AdvertisedKeys] = []
        for index in 0..<6 { advertised.append(try round.clients[index].advertiseKeys()) }
        let forger = try KeyAgreementKey()
        let original = advertised[4]
        advertised[4] = try AdvertisedKeys(
            round: original.round, index: 4, encryptionKey: forger.publicKey, maskingKey: original.maskingKey,
            selfMaskCommitment: original.selfMaskCommitment, signature: original.signature)
        let roster = try Roster(round: round.parameters.round, entries: advertised)
        let shares = try round.clients[0].shareKeys(roster: roster)
        #expect(!shares.contains { $0.recipient == 4 })
        #expect(shares.count == 4)
        #expect(round.clients[0].rejections.map(\.code) == [.invalidSignature])
        #expect(round.clients[0].rejections.first?.client == 4)
    }

    /// A client left out of the roster (late, or pruned) is told so, not warned of swapped keys.
    @Test func clientLeftOutOfTheRosterIsToldWhy() throws {
        var round = try SecAggRound(participants: 6, vectorLength: 3, seed: 15)
        var advertised: [AdvertisedKeys] = []
        for index in 0..<6 { advertised.append(try round.clients[index].advertiseKeys()) }
        let roster = try Roster(round: round.parameters.round, entries: advertised.filter { $0.index != 0 })
        let error = secAggError { _ = try round.clients[0].shareKeys(roster: roster) }
        #expect(error?.code == .tooFewNeighbours && error?.message.contains("not in the roster") == true)
    }

    /// Too many responders missing at the unmask stage: `finish` aborts naming the client and stage; later calls
    /// are refused.
    @Test func belowThresholdAtUnmaskAborts() throws {
        var round = try SecAggRound(participants: 6, vectorLength: 3, seed: 2)
        #expect(round.parameters.threshold == 4)
        let inputs = [[UInt32]](repeating: [1, 2, 3, 4], count: 6)
        let error = secAggError { _ = try round.run(encoded: inputs, dropouts: SecAggDropouts(unmask: [0, 1, 2])) }
        #expect(error?.code == .roundAborted)
        #expect(error?.stage == .unmask)
        #expect(error?.client != nil && error?.clientID != nil)
        #expect(error?.message.contains("share") == true)
        #expect(secAggError { _ = try round.server.finish() }?.code == .wrongStage)
    }

    /// Too few masked inputs: `closeMaskedInput` aborts before any secret is requested.
    @Test func tooFewSurvivorsAbortsAtMaskedInput() throws {
        var round = try SecAggRound(participants: 6, vectorLength: 3, seed: 4)
        let inputs = [[UInt32]](repeating: [1, 2, 3, 4], count: 6)
        let error = secAggError {
            _ = try round.run(encoded: inputs, dropouts: SecAggDropouts(maskedInput: [1, 3, 5]))
        }
        #expect(error?.code == .roundAborted)
        #expect(error?.stage == .maskedInput)
    }

    /// A Harary graph where one client's neighbourhood empties at stage 3: the abort names that client.
    @Test func unrecoverableNeighbourhoodAbortsNamingTheClient() throws {
        var round = try SecAggRound(participants: 12, vectorLength: 2, neighbourCount: 4, threshold: 3, seed: 6)
        let graph = round.parameters.graph
        let neighbours = graph.neighbours(of: 0)
        let inputs = [[UInt32]](repeating: [7, 7, 7], count: 12)
        // Client 0 survives, but only one of its four neighbours sends a masked input.
        let error = secAggError {
            _ = try round.run(encoded: inputs, dropouts: SecAggDropouts(maskedInput: Set(neighbours.dropFirst())))
        }
        #expect(error?.code == .roundAborted)
        #expect(error?.stage == .maskedInput)
        #expect(error?.client.map { $0 == 0 || neighbours.contains($0) } == true)
        #expect(error.map { "\($0)" }?.contains("client-") == true)
    }

    /// A client refuses a request for both secrets of one peer, one that does not list it as a survivor, and a
    /// second request.
    @Test func clientRefusesBadUnmaskRequests() throws {
        for variant in 0..<4 {
            var round = try SecAggRound(participants: 5, vectorLength: 2, seed: 30 + UInt64(variant))
            // Drive the round by hand up to the unmask stage.
            let inputs = [[UInt32]](repeating: [1, 1, 1], count: 5)
            for index in 0..<5 { try round.server.receive(round.clients[index].advertiseKeys()) }
            let roster = try round.server.closeAdvertiseKeys()
            for index in 0..<5 { try round.server.receive(round.clients[index].shareKeys(roster: roster), from: index) }
            let inboxes = try round.server.closeShareKeys()
            for index in 0..<5 {
                try round.server.receive(
                    round.clients[index].maskedInput(encoded: inputs[index], shares: inboxes[index]!))
            }
            let honest = try round.server.closeMaskedInput()
            let crafted: UnmaskRequest
            switch variant {
            case 0: crafted = try UnmaskRequest(round: honest.round, survivors: honest.survivors, dropped: [3])
            case 1: crafted = try UnmaskRequest(round: honest.round, survivors: [1, 2, 3, 4], dropped: [0])
            case 3:
                // Enough survivors only with indices outside the roster: the padding is refused.
                let padding = (0..<round.clients[0].parameters.minimumSurvivorCount).map { 100 + $0 }
                crafted = try UnmaskRequest(round: honest.round, survivors: [0] + padding, dropped: [])
            default: crafted = honest
            }
            if variant == 2 {
                _ = try round.clients[0].unmask(crafted)
                #expect(secAggError { _ = try round.clients[0].unmask(crafted) }?.code == .wrongStage)
            } else {
                let error = secAggError { _ = try round.clients[0].unmask(crafted) }
                #expect(error?.code == .refusedRequest)
                #expect(error?.client == [0: 3, 1: 0, 3: 100][variant])
            }
        }
    }

    /// Rejections the coordinator logs while the round goes on: duplicate, wrong round, unknown sender, late.
    @Test func serverRejectsStrayMessages() throws {
        var round = try SecAggRound(participants: 5, vectorLength: 2, seed: 50)
        let keys = try round.clients[0].advertiseKeys()
        try round.server.receive(keys)
        #expect(secAggError { try round.server.receive(keys) }?.code == .duplicateMessage)
        let other = try AdvertisedKeys(
            round: keys.round + 1, index: 1, encryptionKey: keys.encryptionKey, maskingKey: keys.maskingKey,
            selfMaskCommitment: keys.selfMaskCommitment, signature: keys.signature)
        #expect(secAggError { try round.server.receive(other) }?.code == .wrongRound)
        let stranger = try AdvertisedKeys(
            round: keys.round, index: 9, encryptionKey: keys.encryptionKey, maskingKey: keys.maskingKey,
            selfMaskCommitment: keys.selfMaskCommitment, signature: keys.signature)
        #expect(secAggError { try round.server.receive(stranger) }?.code == .unknownSender)
        // Keys of client 0 presented as client 1's: the signature binds the index.
        let moved = try AdvertisedKeys(
            round: keys.round, index: 1, encryptionKey: keys.encryptionKey, maskingKey: keys.maskingKey,
            selfMaskCommitment: keys.selfMaskCommitment, signature: keys.signature)
        #expect(secAggError { try round.server.receive(moved) }?.code == .invalidSignature)
        for index in 2..<5 { try round.server.receive(round.clients[index].advertiseKeys()) }
        let roster = try round.server.closeAdvertiseKeys()
        #expect(roster.indices == [0, 2, 3, 4])
        #expect(secAggError { try round.server.receive(keys) }?.code == .wrongStage)
        #expect(secAggError { try round.server.receive([], from: 1) }?.code == .unknownSender)
        #expect(secAggError { try round.server.receive([], from: 0) }?.code == .invalidShares)
        #expect(round.server.rejections.count == 7)
        #expect(secAggError { _ = try round.clients[0].advertiseKeys() }?.code == .wrongStage)
    }

    /// A participant repeating a refused message cannot grow the coordinator's record of the round.
    @Test func repeatedRefusalsKeepABoundedRecord() throws {
        var round = try SecAggRound(participants: 3, vectorLength: 2, seed: 51)
        let keys = try round.clients[0].advertiseKeys()
        try round.server.receive(keys)
        let repeats = 2_500
        for _ in 0..<repeats { #expect(secAggError { try round.server.receive(keys) }?.code == .duplicateMessage) }
        #expect(round.server.rejections.total == repeats)
        #expect(round.server.rejections.count == round.server.rejections.capacity)
        #expect(round.server.rejections.allSatisfy { $0.code == .duplicateMessage && $0.client == 0 })
    }
}
