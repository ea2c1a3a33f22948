import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import FedRecTensor
import Testing

@Suite("Update payload: delta encoding")
struct DeltaEncodingTests {
    static let shapes = PayloadShapes(userTowerCount: 1_000, itemRows: 7, dimension: 4)

    static func update(delta: [Float]) -> ClientUpdate {
        var gradient = Matrix(rows: 7, columns: 4)
        for i in 0..<gradient.count { gradient.storage[i] = Float(i) * 0.25 - 1 }
        return ClientUpdate(
            userTowerDelta: delta, itemEmbeddingGradient: .dense(gradient), exampleCount: 12, meanLoss: 3.5)
    }

    /// Deltas with non-zero values in a few random positions (block-sparse form) up to all (dense form).
    @Test("delta round trip, sparse and dense", arguments: [0, 1, 5, 40, 1_000])
    func deltaRoundTrip(nonZero: Int) throws {
        var rng = SplitMix64(seed: UInt64(nonZero) &+ 3)
        var delta = [Float](repeating: 0, count: Self.shapes.userTowerCount)
        for _ in 0..<nonZero {
            delta[Int(rng.next() % UInt64(delta.count))] = Float(Int(rng.next() % 2001) - 1000) / 997
        }
        let encoded = ClientUpdatePayload.encode(Self.update(delta: delta))
        let decoded = try ClientUpdatePayload.decode(encoded, shapes: Self.shapes)
        #expect(decoded == Self.update(delta: delta))
        if nonZero <= 5 { #expect(encoded.count < 4 * delta.count / 2) }
    }

    @Test("a block index out of range or repeated is refused")
    func badBlockIndex() throws {
        var delta = [Float](repeating: 0, count: Self.shapes.userTowerCount)
        delta[70] = 1  // block 1
        delta[130] = 2  // block 2
        let encoded = ClientUpdatePayload.encode(Self.update(delta: delta))
        // Header (35 bytes, the clipping report last), then the delta form (1), the stored block count (4) and the
        // two block indices.
        let form = 35
        #expect(encoded[form] == 1)
        var repeated = encoded
        repeated[form + 9] = 1  // second index 2 -> 1: not increasing
        #expect(throws: ProtocolError.self) { try ClientUpdatePayload.decode(repeated, shapes: Self.shapes) }
        var outOfRange = encoded
        outOfRange[form + 9] = 200  // block 200 of 16
        #expect(throws: ProtocolError.self) { try ClientUpdatePayload.decode(outOfRange, shapes: Self.shapes) }
        var unknownForm = encoded
        unknownForm[form] = 9
        #expect(throws: ProtocolError.self) { try ClientUpdatePayload.decode(unknownForm, shapes: Self.shapes) }
    }

    /// bfloat16 on the wire: the decoded update is exactly `rounded(to: .bfloat16)` of the sent one, in the dense
    /// and block-sparse delta forms and for dense and row-sparse gradients, in about half the bytes.
    @Test("bfloat16 updates decode to the rounded update", arguments: [1, 40, 1_000])
    func bfloat16RoundTrip(nonZero: Int) throws {
        var rng = SplitMix64(seed: UInt64(nonZero) &+ 11)
        var delta = [Float](repeating: 0, count: Self.shapes.userTowerCount)
        for _ in 0..<nonZero {
            delta[Int(rng.next() % UInt64(delta.count))] = Float(Int(rng.next() % 2_000_001) - 1_000_000) / 997_331
        }
        var sparse = RowSparseGradient(tableRows: 7, columns: 4)
        for row in [5, 2] {
            let values: [Float] = (0..<4).map { Float(row) / 3 + Float($0) * 1e-3 }
            values.withUnsafeBufferPointer { sparse.add(row: row, $0.baseAddress!) }
        }
        for update in [
            Self.update(delta: delta),
            ClientUpdate(
                userTowerDelta: delta, itemEmbeddingGradient: .rowSparse(sparse), exampleCount: 3, meanLoss: 0.25),
        ] {
            let half = ClientUpdatePayload.encode(update, precision: .bfloat16)
            let full = ClientUpdatePayload.encode(update)
            // The decoder scatters a row-sparse gradient into a dense matrix.
            var expected = update.rounded(to: .bfloat16)
            var exact = update
            if case .rowSparse(let g) = expected.itemEmbeddingGradient {
                expected.itemEmbeddingGradient = .dense(g.dense())
            }
            if case .rowSparse(let g) = exact.itemEmbeddingGradient { exact.itemEmbeddingGradient = .dense(g.dense()) }
            #expect(try ClientUpdatePayload.decode(half, shapes: Self.shapes) == expected)
            #expect(try ClientUpdatePayload.decode(full, shapes: Self.shapes) == exact)
            #expect(half.count < full.count / 2 + 64)
        }
    }

    /// The round assignment in bfloat16 decodes to the rounded model and says so; an unknown precision byte is
    /// a malformed payload.
    @Test("bfloat16 round assignments decode to the rounded model")
    func bfloat16Assignment() throws {
        let shapes = PayloadShapes(userTowerCount: 5, itemRows: 3, dimension: 2)
        let tower: [Float] = [1, -0.3, 1e-30, 3.0e38, .pi]
        let items = Matrix(rows: 3, columns: 2, storage: [0.1, 0.2, -0.3, 0.4, 0.5, -0.6])
        let payload = GlobalModelPayload(round: 4, userTower: tower, itemEmbeddings: items, precision: .bfloat16)
        let encoded = payload.encoded()
        let decoded = try GlobalModelPayload(decoding: encoded, shapes: shapes, round: 4)
        #expect(decoded.precision == .bfloat16)
        #expect(decoded.userTower == WirePrecision.bfloat16.rounded(tower))
        #expect(decoded.itemEmbeddings.storage == WirePrecision.bfloat16.rounded(items.storage))
        var unknown = encoded
        unknown[24] = 7  // the precision byte after magic (4), round (8) and the three counts (12)
        let error = #expect(throws: ProtocolError.self) {
            try GlobalModelPayload(decoding: unknown, shapes: shapes, round: 4)
        }
        #expect(error?.code == .malformedPayload)
    }

    @Test("the run terms are found by the payload's own sizes, whatever its shapes; damaged sizes give none")
    func runTermsPeek() throws {
        let terms = (0..<32).map { UInt8($0 * 7 % 251) }
        for precision in [WirePrecision.float32, .bfloat16] {
            let payload = GlobalModelPayload(
                round: 2, userTower: [1, 2, 3], itemEmbeddings: Matrix(rows: 4, columns: 2, repeating: 0.5),
                precision: precision, seed: 9, trainingConfigurationJSON: "{\"clip\":1}", runTerms: terms)
            let encoded = payload.encoded()
            #expect(GlobalModelPayload.runTerms(in: encoded) == terms)
            // Other shapes than a client expects: decoding refuses them, the terms are still read.
            let other = PayloadShapes(userTowerCount: 5, itemRows: 4, dimension: 2)
            #expect(throws: ProtocolError.self) { try GlobalModelPayload(decoding: encoded, shapes: other, round: 2) }
            // Cut short, or announcing more values than there are bytes.
            #expect(GlobalModelPayload.runTerms(in: Array(encoded.dropLast(1))) == nil)
            for (at, value) in [(16, UInt32.max), (20, UInt32.max), (12, UInt32(1_000))] {
                var damaged = encoded
                withUnsafeBytes(of: value.littleEndian) { damaged.replaceSubrange(at..<(at + 4), with: $0) }
                #expect(GlobalModelPayload.runTerms(in: damaged) == nil, "count at byte \(at) = \(value)")
            }
            #expect(GlobalModelPayload.runTerms(in: Array("FRGX".utf8) + encoded.dropFirst(4)) == nil)
        }
    }
}

@Suite("Round assignment: secure-aggregation section")
struct SecureRoundAssignmentTests {
    @Test("the stage deadline travels in whole milliseconds; more than a day is refused")
    func stageDeadline() throws {
        let keys = try (0..<3).map { _ in try SigningIdentity().publicKey }
        let parameters = SecureAggregationParameters(
            round: 4, participants: ["a", "b", "c"], vectorLength: 5, clipRange: 1, maximumWeight: 1, graphSeed: 9)
        let shapes = PayloadShapes(userTowerCount: 2, itemRows: 1, dimension: 3)
        func payload(_ deadline: Duration) -> [UInt8] {
            GlobalModelPayload(
                round: 4, userTower: [1, 2], itemEmbeddings: Matrix(rows: 1, columns: 3, repeating: 0),
                secure: SecureRoundAssignment(
                    parameters: parameters, identityKeys: keys, weighting: .uniform, stageDeadline: deadline)
            ).encoded()
        }
        let decoded = try GlobalModelPayload(decoding: payload(.milliseconds(45_250)), shapes: shapes, round: 4)
        #expect(decoded.secure?.stageDeadline == .milliseconds(45_250))
        var tooLong = payload(.seconds(1))
        // The u64 after "FRSA", the weighting and the clipping flag.
        let at = try #require(
            tooLong.indices.first { Array(tooLong[$0..<min($0 + 4, tooLong.count)]) == Array("FRSA".utf8) })
        withUnsafeBytes(of: UInt64(86_400_001).littleEndian) { tooLong.replaceSubrange((at + 6)..<(at + 14), with: $0) }
        let error = try #require(
            #expect(throws: ProtocolError.self) { try GlobalModelPayload(decoding: tooLong, shapes: shapes, round: 4) })
        #expect(error.message.contains("stage deadline of 86400001 ms"), "\(error)")
    }
}
