import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Testing

@Suite("Chunking")
struct ChunkingTests {
    static func bytes(_ count: Int, seed: UInt64 = 7) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            let word = rng.next()
            for k in 0..<8 where i + k < count { out[i + k] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(k))) }
            i += 8
        }
        return out
    }

    @Test("round trip", arguments: [0, 1, 1023, 1024, 1025, 5000])
    func roundTrip(count: Int) throws {
        let payload = Self.bytes(count)
        let (plan, chunks) = Chunker.split(payload, chunkSize: 1024)
        #expect(plan.totalLength == count)
        #expect(chunks.count == max(1, (count + 1023) / 1024))
        var assembler = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000)
        for (i, chunk) in chunks.enumerated() { try assembler.append(index: i, chunk) }
        #expect(try assembler.finish() == payload)
    }

    /// A payload already refused is read through without being stored: same framing checks, nothing kept.
    @Test func readThroughWithoutKeeping() throws {
        let payload = Self.bytes(3000)
        let (plan, chunks) = Chunker.split(payload, chunkSize: 1024)
        var assembler = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000, keepsBytes: false)
        for (i, chunk) in chunks.enumerated() { try assembler.append(index: i, chunk) }
        #expect(assembler.isComplete && assembler.receivedBytes == 3000)
        #expect(try assembler.finish().isEmpty)
        var outOfOrder = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000, keepsBytes: false)
        #expect(throws: ProtocolError.self) { try outOfOrder.append(index: 1, chunks[1]) }
        var short = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000, keepsBytes: false)
        try short.append(index: 0, chunks[0])
        #expect(throws: ProtocolError.self) { _ = try short.finish() }
    }

    @Test("a 25 MB payload in 1 MiB chunks, each under gRPC's 4 MiB default limit")
    func twentyFiveMegabytes() throws {
        let payload = Self.bytes(25_000_000)
        let (plan, chunks) = Chunker.split(payload)
        #expect(chunks.count == 24)
        #expect(chunks.allSatisfy { $0.count <= 4 * 1024 * 1024 })
        var assembler = try ChunkAssembler(plan: plan, maximumLength: 30_000_000)
        for (i, chunk) in chunks.enumerated() { try assembler.append(index: i, chunk) }
        #expect(try assembler.finish() == payload)
    }

    @Test("out of order, missing, extra, oversized and corrupted chunks are refused")
    func refusals() throws {
        let payload = Self.bytes(3000)
        let (plan, chunks) = Chunker.split(payload, chunkSize: 1024)
        func code(_ body: () throws -> Void) -> ProtocolError.Code? {
            do { try body() } catch let error as ProtocolError { return error.code } catch { return nil }
            return nil
        }
        // Out of order.
        #expect(
            code {
                var a = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000)
                try a.append(index: 1, chunks[1])
            } == .malformedChunk)
        // Missing last chunk.
        #expect(
            code {
                var a = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000)
                try a.append(index: 0, chunks[0])
                try a.append(index: 1, chunks[1])
                _ = try a.finish()
            } == .malformedChunk)
        // Extra chunk.
        #expect(
            code {
                var a = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000)
                for (i, c) in chunks.enumerated() { try a.append(index: i, c) }
                try a.append(index: 3, chunks[0])
            } == .malformedChunk)
        // Over the limit.
        #expect(code { _ = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 2000) } == .oversized)
        // A chunk longer than announced.
        #expect(
            code {
                var a = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000)
                try a.append(index: 0, chunks[0] + [0])
            } == .oversized)
        // Wrong chunk count for the length.
        #expect(
            code {
                _ = try ChunkAssembler(
                    plan: ChunkPlan(totalLength: 3000, chunkCount: 2), chunkSize: 1024,
                    maximumLength: 10_000)
            } == .malformedChunk)
    }

    @Test("a flipped byte in any chunk of a sealed payload is refused when the reassembled envelope is opened")
    func corruptedChunkOfASealedPayload() throws {
        let keys = try SymmetricKey()
        let header = EnvelopeHeader(kind: .modelUpdate, round: 3, sequence: 0, clientID: "client-1")
        let sealed = try Envelope.seal(Self.bytes(3000), header: header, using: keys).serialized
        let (plan, chunks) = Chunker.split(sealed, chunkSize: 1024)
        for position in stride(from: 0, to: sealed.count, by: 97) {
            var assembler = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000)
            for (i, chunk) in chunks.enumerated() {
                var bytes = Array(chunk)
                if position / 1024 == i { bytes[position % 1024] ^= 0x20 }
                try assembler.append(index: i, bytes)
            }
            let reassembled = try assembler.finish()
            #expect(throws: SecurityError.self, "byte \(position) flipped and the envelope still opened") {
                _ = try Envelope(serialized: reassembled).open(
                    using: keys, clientID: "client-1", kind: .modelUpdate, round: 3)
            }
        }
        var intact = try ChunkAssembler(plan: plan, chunkSize: 1024, maximumLength: 10_000)
        for (i, chunk) in chunks.enumerated() { try intact.append(index: i, chunk) }
        #expect(
            try Envelope(serialized: intact.finish()).open(using: keys, clientID: "client-1", kind: .modelUpdate, round: 3)
                == Self.bytes(3000))
    }
}

@Suite("Payloads")
struct PayloadTests {
    let shapes = PayloadShapes(userTowerCount: 10, itemRows: 4, dimension: 3)

    func update(sparse: Bool = false) -> ClientUpdate {
        let gradient = Matrix(rows: 4, columns: 3, storage: (0..<12).map { Float($0) / 7 })
        return ClientUpdate(
            userTowerDelta: (0..<10).map { Float($0) - 4.5 }, itemEmbeddingGradient: .dense(gradient),
            exampleCount: 5, meanLoss: 1.25)
    }

    @Test(arguments: [nil, false, true])
    func updateRoundTrip(unclipped: Bool?) throws {
        var original = update()
        original.unclipped = unclipped
        let decoded = try ClientUpdatePayload.decode(ClientUpdatePayload.encode(original), shapes: shapes)
        #expect(decoded == original && decoded.unclipped == unclipped)
    }

    /// The secure input ends with the unclipped bit times the clip range only when the round asks for it.
    @Test func secureInputCarriesTheClippingReport() {
        var original = update()
        let base = SecureInput.flatten(original)
        #expect(base.count == SecureInput.length(shapes) && Array(base.prefix(10)) == original.userTowerDelta)
        original.unclipped = true
        #expect(SecureInput.flatten(original, clippingReportScale: 7) == base + [7])
        #expect(SecureInput.length(shapes, reportsClipping: true) == base.count + 1)
        original.unclipped = false
        #expect(SecureInput.flatten(original, clippingReportScale: 7) == base + [0])
    }

    @Test func globalModelRoundTrip() throws {
        let model = GlobalModelPayload(
            round: 3, userTower: (0..<10).map(Float.init), itemEmbeddings: Matrix(rows: 4, columns: 3, repeating: 0.5),
            seed: 0xDEAD_BEEF, trainingConfigurationJSON: #"{"batchSize":8,"clipNorm":0.5}"#,
            runTerms: try Wire.runTermsDigest(modelConfigurationJSON: "{}", fold: "test"))
        #expect(model.runTerms != (try Wire.runTermsDigest(modelConfigurationJSON: "{}", fold: "validation")))
        #expect(try GlobalModelPayload(decoding: model.encoded(), shapes: shapes, round: 3) == model)
        #expect(throws: ProtocolError.self) {
            try GlobalModelPayload(decoding: model.encoded(), shapes: shapes, round: 4)
        }
        // The round's terms are part of the sealed plaintext: a length past the limit or past the end is refused.
        var bytes = model.encoded()
        let lengthAt = 4 + 8 + 12 + 1 + 4 * (10 + 12) + 8
        for length in [UInt32(GlobalModelPayload.maximumTrainingBytes + 1), UInt32(bytes.count)] {
            withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(lengthAt..<(lengthAt + 4), with: $0) }
            #expect(throws: ProtocolError.self) { try GlobalModelPayload(decoding: bytes, shapes: shapes, round: 3) }
        }
    }

    @Test("wrong shape, non-finite values, truncation and trailing bytes are refused")
    func refusals() throws {
        func code(_ bytes: [UInt8], _ shapes: PayloadShapes) -> ProtocolError.Code? {
            do { _ = try ClientUpdatePayload.decode(bytes, shapes: shapes) } catch let e as ProtocolError {
                return e.code
            } catch {
                return nil
            }
            return nil
        }
        let good = ClientUpdatePayload.encode(update())
        #expect(code(good, PayloadShapes(userTowerCount: 11, itemRows: 4, dimension: 3)) == .wrongShape)
        var nan = update()
        nan.userTowerDelta[3] = .nan
        #expect(code(ClientUpdatePayload.encode(nan), shapes) == .nonFinite)
        var inf = update()
        inf.meanLoss = .infinity
        #expect(code(ClientUpdatePayload.encode(inf), shapes) == .nonFinite)
        #expect(code(Array(good.dropLast()), shapes) == .malformedPayload)
        #expect(code(good + [0], shapes) == .malformedPayload)
        #expect(code([1, 2, 3], shapes) == .malformedPayload)
        // The clipping report is the byte after the precision byte (offset 34): only 0, 1 and 2 are defined.
        var report = good
        report[34] = 3
        #expect(code(report, shapes) == .malformedPayload)
    }
}

@Suite("Enrolment and sealing")
struct EnrolmentTests {
    @Test func transcriptBindsEverything() throws {
        let coordinator = try Identity.generate(name: "coordinator")
        let client = try Identity.generate(name: "user-1")
        let other = try Identity.generate(name: "user-2")
        let allowList = try AllowList([client.publicIdentity])
        let challenge = [UInt8](repeating: 9, count: 32)
        let signature = try EnrolmentTranscript.sign(
            challenge: challenge, identity: client, coordinator: coordinator.publicIdentity)
        try EnrolmentTranscript.verify(
            challenge: challenge, claimed: client.publicIdentity, signature: signature,
            coordinator: coordinator.publicIdentity, allowList: allowList)
        // Another challenge, another coordinator, an unlisted client: refused.
        #expect(throws: ProtocolError.self) {
            try EnrolmentTranscript.verify(
                challenge: [UInt8](repeating: 8, count: 32), claimed: client.publicIdentity, signature: signature,
                coordinator: coordinator.publicIdentity, allowList: allowList)
        }
        #expect(throws: ProtocolError.self) {
            try EnrolmentTranscript.verify(
                challenge: challenge, claimed: client.publicIdentity, signature: signature,
                coordinator: other.publicIdentity, allowList: allowList)
        }
        let otherSignature = try EnrolmentTranscript.sign(
            challenge: challenge, identity: other, coordinator: coordinator.publicIdentity)
        #expect(throws: ProtocolError.self) {
            try EnrolmentTranscript.verify(
                challenge: challenge, claimed: other.publicIdentity, signature: otherSignature,
                coordinator: coordinator.publicIdentity, allowList: allowList)
        }
    }

    @Test("a sealed update splits into chunks; a flipped ciphertext bit fails the AEAD tag")
    func sealedChunks() throws {
        let coordinator = try Identity.generate(name: "coordinator")
        let client = try Identity.generate(name: "user-1")
        let clientKeys = try client.keyAgreement.clientSessionKeys(serverPublicKey: coordinator.keyAgreement.publicKey)
        let serverKeys = try coordinator.keyAgreement.serverSessionKeys(clientPublicKey: client.keyAgreement.publicKey)
        let payload = ChunkingTests.bytes(5000)
        let sealed = try Envelope.seal(
            payload, header: EnvelopeHeader(kind: .modelUpdate, round: 2, sequence: 0, clientID: "user-1"),
            using: clientKeys.transmit
        ).serialized
        let messages = try Wire.updateMessages(
            envelope: sealed, clientID: "user-1", round: 2, attempt: 0, proofKey: clientKeys.transmit, chunkSize: 1024)
        #expect(messages.count == 1 + (sealed.count + 1023) / 1024)
        // The header's proof authenticates every field of it under the client's key, and nothing else.
        let header = messages[0].header
        #expect(HeaderProof.verifies(header, key: serverKeys.receive))
        #expect(!HeaderProof.verifies(header, key: clientKeys.receive))
        for change in 0..<6 {
            var altered = header
            switch change {
            case 0: altered.clientID = "user-2"
            case 1: altered.round += 1
            case 2: altered.attempt += 1
            case 3: altered.payload.totalLength += 1
            case 4: altered.payload.chunkCount += 1
            default: altered.proof = altered.proof.dropLast()
            }
            #expect(!HeaderProof.verifies(altered, key: serverKeys.receive), "change \(change)")
        }
        var tampered = sealed
        tampered[tampered.count - 20] ^= 0x40
        #expect(throws: SecurityError.self) {
            try Envelope(serialized: tampered).open(
                using: serverKeys.receive, clientID: "user-1", kind: .modelUpdate, round: 2)
        }
        let opened = try Envelope(serialized: sealed).open(
            using: serverKeys.receive, clientID: "user-1", kind: .modelUpdate, round: 2)
        #expect(opened == payload)
    }

    /// An announced length far above anything sent (the limit may come from unauthenticated shapes) reserves at
    /// most `upfrontReserve` before chunks arrive: no trap, no huge allocation.
    @Test func hugeAnnouncedLengthDoesNotReserveIt() throws {
        let huge = 1 << 40
        let plan = ChunkPlan(totalLength: huge, chunkCount: huge / ChunkPlan.defaultChunkSize)
        var assembler = try ChunkAssembler(plan: plan, maximumLength: Int.max / 2)
        try assembler.append(index: 0, [UInt8](repeating: 1, count: ChunkPlan.defaultChunkSize))
        #expect(assembler.receivedBytes == ChunkPlan.defaultChunkSize && !assembler.isComplete)
    }
}
