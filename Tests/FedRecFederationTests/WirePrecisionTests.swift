import FedRecFederation
import FedRecTensor
import Testing

@Suite("Wire precision: bfloat16 rounding")
struct WirePrecisionTests {
    /// Random finite floats of every magnitude: the rounding is within 2^-8 of a normal value, idempotent, the
    /// codec's bit patterns give the same value, and float32 leaves values alone.
    @Test("rounding error bound, idempotence, codec agreement", arguments: [1, 2, 3] as [UInt64])
    func errorBound(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var values: [Float] = []
        for _ in 0..<20_000 {
            let bits = UInt32(truncatingIfNeeded: rng.next())
            let x = Float(bitPattern: bits)
            // Finite, and far enough below Float.greatestFiniteMagnitude not to round to infinity.
            if x.isFinite, abs(x) < 3.3e38 { values.append(x) }
        }
        let rounded = WirePrecision.bfloat16.rounded(values)
        for (x, r) in zip(values, rounded) {
            if x.isNormal { #expect(abs(r - x) <= abs(x) * 0x1p-8, "x \(x) rounded to \(r)") }
            #expect(r.isFinite)
            #expect(r.bitPattern & 0xFFFF == 0)
            #expect(WirePrecision.float(bfloat16Bits: WirePrecision.bfloat16Bits(x)).bitPattern == r.bitPattern)
        }
        #expect(WirePrecision.bfloat16.rounded(rounded).map(\.bitPattern) == rounded.map(\.bitPattern))
        #expect(WirePrecision.float32.rounded(values).map(\.bitPattern) == values.map(\.bitPattern))
    }

    /// Halfway cases go to the even neighbour; values just past halfway go up; signs are kept.
    @Test("ties to even")
    func tiesToEven() {
        let p = WirePrecision.bfloat16
        // bfloat16 steps near 1 are 2^-7: 1 + 2^-8 is halfway between 1 (even) and 1 + 2^-7 (odd).
        #expect(p.rounded([1 + 0x1p-8]) == [1])
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
        #expect(p.rounded([1 + 3 * 0x1p-8]) == [1 + 0x1p-6])
        #expect(p.rounded([1 + 0x1p-8 + 0x1p-20]) == [1 + 0x1p-7])
        #expect(p.rounded([-(1 + 0x1p-8 + 0x1p-20)]) == [-(1 + 0x1p-7)])
        #expect(p.rounded([0, -0.0]).map(\.bitPattern) == [0, (-0.0 as Float).bitPattern])
    }

    /// An update rounded to bfloat16 rounds its delta and gradient values only; float32 is the identity.
    @Test("rounding an update")
    func roundingAnUpdate() {
        let gradient = Matrix(rows: 2, columns: 2, storage: [0.1, -0.2, 0.3, 1e-3])
        let update = ClientUpdate(
            userTowerDelta: [1.0 / 3, -2.0 / 7, 0], itemEmbeddingGradient: .dense(gradient), exampleCount: 9,
            meanLoss: 1.0 / 3)
        #expect(update.rounded(to: .float32) == update)
        let rounded = update.rounded(to: .bfloat16)
        #expect(rounded.userTowerDelta == WirePrecision.bfloat16.rounded(update.userTowerDelta))
        #expect(
            rounded.itemEmbeddingGradient
                == .dense(Matrix(rows: 2, columns: 2, storage: WirePrecision.bfloat16.rounded(gradient.storage))))
        #expect(rounded.exampleCount == 9 && rounded.meanLoss == update.meanLoss)
    }
}
