import FedRecFederation
import FedRecProtocol
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
        // Header (33 bytes), then the delta form (1), the stored block count (4) and the two block indices.
        let form = 33
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
}
