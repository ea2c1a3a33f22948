import FedRecSecurity
import Testing

@Suite struct EnvelopeTests {
    struct Session {
        var clientSealer: EnvelopeSealer
        var coordinatorOpener: EnvelopeOpener
        var coordinatorKeys: SessionKeys
        var clientKeys: SessionKeys
    }

    func session(_ id: String = "client-0001") throws -> Session {
        let client = try KeyAgreementKey()
        let coordinator = try KeyAgreementKey()
        let c = try client.clientSessionKeys(serverPublicKey: coordinator.publicKey)
        let s = try coordinator.serverSessionKeys(clientPublicKey: client.publicKey)
        return Session(
            clientSealer: EnvelopeSealer(clientID: id, key: c.transmit),
            coordinatorOpener: EnvelopeOpener(clientID: id, key: s.receive), coordinatorKeys: s, clientKeys: c)
    }

    @Test func headerLayoutIsFixed() throws {
        let header = EnvelopeHeader(kind: .modelUpdate, round: 0x0102, sequence: 7, clientID: "ab")
        let bytes = try header.encoded()
        #expect(bytes.count == 26)
        #expect(Array(bytes[0..<4]) == Array("fdrc".utf8))
        #expect(Array(bytes[4..<8]) == [0, 1, 2, 2])  // version 1, kind 2, id length 2
        #expect(Array(bytes[8..<16]) == [0, 0, 0, 0, 0, 0, 1, 2])
        #expect(Array(bytes[16..<24]) == [0, 0, 0, 0, 0, 0, 0, 7])
        #expect(Array(bytes[24...]) == Array("ab".utf8))
    }

    @Test func roundTripCarriesTheHeader() throws {
        var s = try session()
        let wire = try s.clientSealer.seal([9, 8, 7] as [UInt8], kind: .modelUpdate, round: 3)
        let opened = try s.coordinatorOpener.open(wire, kind: .modelUpdate, round: 3)
        #expect(opened.payload == [9, 8, 7])
        #expect(opened.header == EnvelopeHeader(kind: .modelUpdate, round: 3, sequence: 0, clientID: "client-0001"))
        #expect(s.clientSealer.nextSequence == 1)
    }

    @Test func replayedAndReorderedMessagesAreRejected() throws {
        var s = try session()
        let first = try s.clientSealer.seal([1] as [UInt8], kind: .modelUpdate, round: 1)
        let second = try s.clientSealer.seal([2] as [UInt8], kind: .modelUpdate, round: 1)
        let nextRound = try s.clientSealer.seal([3] as [UInt8], kind: .modelUpdate, round: 2)
        _ = try s.coordinatorOpener.open(second, kind: .modelUpdate)
        expectCode(.replayedMessage) { _ = try s.coordinatorOpener.open(second, kind: .modelUpdate) }
        expectCode(.outOfOrderMessage) { _ = try s.coordinatorOpener.open(first, kind: .modelUpdate) }
        _ = try s.coordinatorOpener.open(nextRound, kind: .modelUpdate)
        expectCode(.replayedMessage) { _ = try s.coordinatorOpener.open(nextRound, kind: .modelUpdate) }
        // A stale round with a higher sequence number is still older.
        var stale = EnvelopeSealer(clientID: "client-0001", key: s.clientKeys.transmit, firstSequence: 100)
        let old = try stale.seal([4] as [UInt8], kind: .modelUpdate, round: 1)
        expectCode(.outOfOrderMessage) { _ = try s.coordinatorOpener.open(old, kind: .modelUpdate) }
    }

    @Test func rejectedMessagesDoNotAdvanceTheGuard() throws {
        var s = try session()
        var forged = try s.clientSealer.seal([1] as [UInt8], kind: .modelUpdate, round: 1)
        forged[forged.count - 1] ^= 1
        expectCode(.authenticationFailed) { _ = try s.coordinatorOpener.open(forged, kind: .modelUpdate) }
        var fresh = EnvelopeSealer(clientID: "client-0001", key: s.clientKeys.transmit)
        _ = try s.coordinatorOpener.open(fresh.seal([1] as [UInt8], kind: .modelUpdate, round: 1), kind: .modelUpdate)
    }

    @Test func wrongContextIsRejectedWithASpecificError() throws {
        var s = try session()
        let wire = try s.clientSealer.seal([5] as [UInt8], kind: .modelUpdate, round: 4)
        let envelope = try Envelope(serialized: wire)
        let key = s.coordinatorKeys.receive
        expectCode(.unexpectedContext) {
            _ = try envelope.open(using: key, clientID: "client-0002", kind: .modelUpdate)
        }
        expectCode(.unexpectedContext) { _ = try envelope.open(using: key, clientID: "client-0001", kind: .enrolment) }
        expectCode(.unexpectedContext) {
            _ = try envelope.open(using: key, clientID: "client-0001", kind: .modelUpdate, round: 5)
        }
        // Wrong direction (the coordinator's transmit key) and a stranger's key.
        expectCode(.authenticationFailed) {
            _ = try envelope.open(using: s.coordinatorKeys.transmit, clientID: "client-0001", kind: .modelUpdate)
        }
        expectCode(.authenticationFailed) {
            _ = try envelope.open(using: SymmetricKey(), clientID: "client-0001", kind: .modelUpdate)
        }
        #expect(try envelope.open(using: key, clientID: "client-0001", kind: .modelUpdate, round: 4) == [5])
    }

    /// A round's model sealed once under a fresh round key, the key sealed for one client: the client recovers the
    /// key into `SecureBytes` and opens the model; the key envelope opens only for its client, kind and round, and
    /// the model only with that round's key.
    @Test func roundKeyUnlocksTheSharedRoundModel() throws {
        let s = try session("c1")
        let roundKey = try SymmetricKey()
        let model = try Envelope.seal(
            [1, 2, 3] as [UInt8], header: EnvelopeHeader(kind: .roundModel, round: 9, sequence: 0, clientID: "cohort"),
            using: roundKey)
        let sealedKey = try roundKey.withUnsafeBytes { key in
            try Envelope.seal(
                key, header: EnvelopeHeader(kind: .roundKey, round: 9, sequence: 1, clientID: "c1"),
                using: s.coordinatorKeys.transmit)
        }
        let keyEnvelope = try Envelope(serialized: sealedKey.serialized)
        let recovered = try SymmetricKey(
            keyEnvelope.openSecret(using: s.clientKeys.receive, clientID: "c1", kind: .roundKey, round: 9))
        #expect(recovered == roundKey)
        let received = try Envelope(serialized: model.serialized)
        #expect(try received.open(using: recovered, clientID: "cohort", kind: .roundModel, round: 9) == [1, 2, 3])
        expectCode(.unexpectedContext) {
            _ = try keyEnvelope.openSecret(using: s.clientKeys.receive, clientID: "c2", kind: .roundKey)
        }
        expectCode(.unexpectedContext) {
            _ = try keyEnvelope.openSecret(using: s.clientKeys.receive, clientID: "c1", kind: .roundKey, round: 8)
        }
        expectCode(.authenticationFailed) {
            _ = try keyEnvelope.openSecret(using: s.clientKeys.transmit, clientID: "c1", kind: .roundKey)
        }
        expectCode(.authenticationFailed) {
            _ = try received.open(using: SymmetricKey(), clientID: "cohort", kind: .roundModel, round: 9)
        }
        expectCode(.unexpectedContext) {
            _ = try received.open(using: recovered, clientID: "cohort", kind: .modelUpdate, round: 9)
        }
        var tampered = model.serialized
        tampered[tampered.count / 2] ^= 0x40
        expectCode(.authenticationFailed) {
            _ = try Envelope(serialized: tampered).open(using: recovered, clientID: "cohort", kind: .roundModel)
        }
    }

    /// Property: any single flipped bit of the wire bytes is refused (never opened), with an error that says why.
    @Test func everyFlippedBitOfTheWireIsRefused() throws {
        var s = try session("c7")
        let wire = try s.clientSealer.seal(Array("delta".utf8), kind: .modelUpdate, round: 2)
        let key = s.coordinatorKeys.receive
        var codes: Set<String> = []
        for bit in 0..<(wire.count * 8) {
            do {
                _ = try Envelope(serialized: flipping(wire, bit: bit)).open(
                    using: key, clientID: "c7", kind: .modelUpdate)
                Issue.record("bit \(bit) flipped and the envelope still opened")
            } catch let error as SecurityError {
                codes.insert(error.code.description)
            }
        }
        #expect(
            codes.isSubset(of: ["malformedMessage", "unsupportedVersion", "unexpectedContext", "authenticationFailed"]))
        #expect(codes.contains("authenticationFailed"))
        // Flipping round or sequence bits (in the header) changes the AD: authentication fails.
        for bit in (8 * 8)..<(24 * 8) {
            expectCode(.authenticationFailed) {
                _ = try Envelope(serialized: flipping(wire, bit: bit)).open(
                    using: key, clientID: "c7", kind: .modelUpdate)
            }
        }
        // Truncation anywhere.
        for length in 0..<wire.count {
            #expect(throws: SecurityError.self) {
                _ = try Envelope(serialized: wire.prefix(length)).open(using: key, clientID: "c7", kind: .modelUpdate)
            }
        }
    }

    @Test func replayGuardIsPerClientAndKind() throws {
        var guardian = ReplayGuard()
        try guardian.accept(EnvelopeHeader(kind: .modelUpdate, round: 1, sequence: 5, clientID: "a"))
        try guardian.accept(EnvelopeHeader(kind: .modelUpdate, round: 1, sequence: 5, clientID: "b"))
        try guardian.accept(EnvelopeHeader(kind: .enrolment, round: 1, sequence: 5, clientID: "a"))
        expectCode(.replayedMessage) {
            try guardian.accept(EnvelopeHeader(kind: .modelUpdate, round: 1, sequence: 5, clientID: "a"))
        }
        expectCode(.outOfOrderMessage) {
            try guardian.accept(EnvelopeHeader(kind: .modelUpdate, round: 0, sequence: 9, clientID: "a"))
        }
        try guardian.accept(EnvelopeHeader(kind: .modelUpdate, round: 2, sequence: 0, clientID: "a"))
        guardian.forget(clientID: "a")
        try guardian.accept(EnvelopeHeader(kind: .modelUpdate, round: 0, sequence: 0, clientID: "a"))
    }
}
