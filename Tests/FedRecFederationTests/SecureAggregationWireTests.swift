import FedRecFederation
import FedRecSecurity
import FedRecTensor
import PropertyBased
import Testing

/// Every strict prefix and one-byte extension of `bytes` must be refused with `malformedMessage`.
private func expectTruncationsRefused(
    _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation, _ parse: ([UInt8]) throws -> Void
) {
    let step = max(1, bytes.count / 300)
    for length in stride(from: 0, to: bytes.count, by: step) {
        do {
            try parse(Array(bytes.prefix(length)))
            Issue.record("prefix of \(length) bytes accepted", sourceLocation: sourceLocation)
        } catch let error as SecureAggregationError {
            #expect(error.code == .malformedMessage, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }
    for extra in [bytes + [0], bytes + [UInt8](repeating: 0xFF, count: 9)] {
        #expect(secAggError(sourceLocation: sourceLocation) { try parse(extra) }?.code == .malformedMessage)
    }
    var wrongVersion = bytes
    wrongVersion[1] = 99
    #expect(secAggError(sourceLocation: sourceLocation) { try parse(wrongVersion) }?.code == .malformedMessage)
    var wrongTag = bytes
    wrongTag[0] = 200
    #expect(secAggError(sourceLocation: sourceLocation) { try parse(wrongTag) }?.code == .malformedMessage)
}

@Suite struct SecureAggregationWireTests {
    /// Runs stages 1-4 of a small round by hand and round-trips every message type through its bytes.
    @Test func everyMessageRoundTripsAndTruncationsAreRefused() throws {
        var round = try SecAggRound(participants: 5, vectorLength: 9, seed: 90)
        let p = round.parameters
        #expect(try SecureAggregationParameters(serialized: p.serialized()) == p)
        expectTruncationsRefused(p.serialized()) { _ = try SecureAggregationParameters(serialized: $0) }

        var advertised: [AdvertisedKeys] = []
        for index in 0..<5 {
            let keys = try round.clients[index].advertiseKeys()
            #expect(try AdvertisedKeys(serialized: keys.serialized()) == keys)
            advertised.append(keys)
            try round.server.receive(keys)
        }
        expectTruncationsRefused(advertised[0].serialized()) { _ = try AdvertisedKeys(serialized: $0) }
        let roster = try round.server.closeAdvertiseKeys()
        #expect(try Roster(serialized: roster.serialized()) == roster)
        expectTruncationsRefused(roster.serialized()) { _ = try Roster(serialized: $0) }
        // One encoding per message (found by `fedrec bench fuzz`): entries out of index order are refused.
        var swapped = roster.serialized()
        let entry = 4 + 32 + 32 + 32 + 64  // index, two keys, commitment, signature
        swapped.replaceSubrange(
            14..<(14 + 2 * entry), with: swapped[(14 + entry)..<(14 + 2 * entry)] + swapped[14..<(14 + entry)])
        #expect(secAggError { _ = try Roster(serialized: swapped) }?.message.contains("not ascending") == true)

        for index in 0..<5 {
            let shares = try round.clients[index].shareKeys(roster: roster)
            for share in shares { #expect(try EncryptedShare(serialized: share.serialized()) == share) }
            let list = EncryptedShare.serialized(shares, round: p.round)
            #expect(try EncryptedShare.list(serialized: list).shares == shares)
            if index == 0 {
                expectTruncationsRefused(shares[0].serialized()) { _ = try EncryptedShare(serialized: $0) }
                expectTruncationsRefused(list) { _ = try EncryptedShare.list(serialized: $0) }
            }
            try round.server.receive(shares, from: index)
        }
        let inboxes = try round.server.closeShareKeys()
        for index in 0..<5 {
            let masked = try round.clients[index].maskedInput(
                [Float](repeating: 0.25, count: 9), weight: 2, shares: inboxes[index]!)
            #expect(try MaskedInput(serialized: masked.serialized()) == masked)
            if index == 0 { expectTruncationsRefused(masked.serialized()) { _ = try MaskedInput(serialized: $0) } }
            try round.server.receive(masked)
        }
        let request = try round.server.closeMaskedInput()
        #expect(try UnmaskRequest(serialized: request.serialized()) == request)
        expectTruncationsRefused(request.serialized()) { _ = try UnmaskRequest(serialized: $0) }
        for index in 0..<5 {
            let response = try round.clients[index].unmask(request)
            #expect(try UnmaskResponse(serialized: response.serialized()) == response)
            // The zeroing form carries the same bytes.
            #expect(response.serializedSecret().withUnsafeBytes { Array($0) } == response.serialized())
            if index == 0 {
                expectTruncationsRefused(response.serialized()) { _ = try UnmaskResponse(serialized: $0) }
                // Shares out of (kind, owner) order are refused: one encoding per response.
                var swapped = response.serialized()
                let share = 1 + 4 + 32  // kind, owner, share
                #expect(swapped.count >= 16 + 2 * share)
                swapped.replaceSubrange(
                    16..<(16 + 2 * share), with: swapped[(16 + share)..<(16 + 2 * share)] + swapped[16..<(16 + share)])
                let refusal = secAggError { _ = try UnmaskResponse(serialized: swapped) }
                #expect(refusal?.message.contains("not in order") == true, "\(String(describing: refusal))")
            }
            try round.server.receive(response)
        }
        let aggregate = try round.server.finish()
        #expect(aggregate.mean.allSatisfy { abs($0 - 0.25) < 1e-6 })
        #expect(abs(aggregate.totalWeight - 10) < 1e-5)
    }

    /// Counts larger than the limits (or than the bytes present) are refused before any allocation.
    @Test func oversizedCountsAreRefused() throws {
        let masked = try MaskedInput(round: 3, index: 1, words: [1, 2, 3])
        var bytes = masked.serialized()
        // wordCount sits after tag, version, round (10), index (4), rejected count (2).
        bytes.replaceSubrange(16..<20, with: [0x7F, 0xFF, 0xFF, 0xFF])
        #expect(secAggError { _ = try MaskedInput(serialized: bytes) }?.message.contains("wordCount") == true)
        bytes.replaceSubrange(16..<20, with: [0x00, 0x00, 0x10, 0x00])
        #expect(secAggError { _ = try MaskedInput(serialized: bytes) }?.message.contains("truncated") == true)

        let request = try UnmaskRequest(round: 1, survivors: [0, 1], dropped: [])
        var requestBytes = request.serialized()
        requestBytes.replaceSubrange(10..<14, with: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(secAggError { _ = try UnmaskRequest(serialized: requestBytes) }?.code == .malformedMessage)

        let roster = try Roster(round: 1, entries: [])
        var rosterBytes = roster.serialized()
        rosterBytes.replaceSubrange(10..<14, with: [0x00, 0x01, 0x00, 0x00])
        #expect(secAggError { _ = try Roster(serialized: rosterBytes) }?.code == .malformedMessage)

        let response = try UnmaskResponse(
            round: 1, index: 0, selfMaskShares: [2: SecureBytes(zeros: 32)], pairwiseMaskShares: [:])
        var responseBytes = response.serialized()
        responseBytes[16] = 3  // kind
        #expect(secAggError { _ = try UnmaskResponse(serialized: responseBytes) }?.message.contains("kind") == true)
    }

    /// Random bytes never trap any parser.
    @Test func randomBytesNeverTrap() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...400), Gen.int(in: 0...1_000_000)) { length, seed in
            var rng = SplitMix64(seed: UInt64(seed))
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if length >= 2 {
                bytes[0] = UInt8(1 + rng.next() % 8)
                bytes[1] = 1
            }
            _ = try? SecureAggregationParameters(serialized: bytes)
            _ = try? AdvertisedKeys(serialized: bytes)
            _ = try? Roster(serialized: bytes)
            _ = try? EncryptedShare(serialized: bytes)
            _ = try? EncryptedShare.list(serialized: bytes)
            _ = try? MaskedInput(serialized: bytes)
            _ = try? UnmaskRequest(serialized: bytes)
            _ = try? UnmaskResponse(serialized: bytes)
        }
    }
}
