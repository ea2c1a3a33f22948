import FedRecTensor

/// The single-query path: a bfloat16 first pass with a proven error bound, exact fp32 re-scoring of the few
/// items it cannot rule out.
///
/// A batch of one query is memory-bound (the fp32 item matrix is `count x d x 4` bytes per query), so the
/// index keeps a second, half-size copy of the items rounded to bfloat16 (the upper 16 bits of a Float) in
/// panels of 8 items. The first pass computes an approximate score `s~` for every item from that copy; by
/// Cauchy-Schwarz the exact fp32 score `s` (as any summation order computes it) satisfies
/// `|s - s~| <= E = |q| * (R + gamma * (maxNorm + maxRoundedNorm))`, where `R` is the largest item-wise norm of
/// the rounding residual `x - x~` and `gamma` bounds the float rounding of a `d`-term dot product. An item whose
/// `s~` is below `threshold - E` (threshold = the exact score of the current k-th best) therefore cannot enter
/// the top-K; every other item is re-scored exactly with `sgemv` (the routine of the fp32 paths) and offered to
/// the heap in index order, so the result is the same as the fp32 scan's.
extension ExactIndex {
    /// Items per bfloat16 panel (one `SIMD8` lane each).
    static let panelWidth = 8

    /// The bfloat16 copy of an item matrix and the constants of its error bound.
    struct RoundedItems: Sendable {
        /// Panel `p`, word `w`, lane `t` at `(p * words + w) * 8 + t`: the high half holds item `8p+t`'s entry `w`
        /// rounded to bfloat16, the low half its entry `w + words` (0 past `d`).
        let words: [UInt32]
        /// 32-bit words per item: `ceil(d / 2)`.
        let wordsPerItem: Int
        let panelCount: Int
        /// `E / |q|` (before the query norm), rounded up generously.
        let boundPerQueryNorm: Double

        init(items: [Float], count: Int, dimension d: Int) {
            let half = (d + 1) / 2
            wordsPerItem = half
            panelCount = (count + ExactIndex.panelWidth - 1) / ExactIndex.panelWidth
            var out = [UInt32](repeating: 0, count: panelCount * half * ExactIndex.panelWidth)
            var maxResidual = 0.0, maxNorm = 0.0, maxRoundedNorm = 0.0
            /// Rounds to the nearest bfloat16 (ties to even); truncates where rounding would overflow.
            func round(_ x: Float) -> (bits: UInt32, value: Float) {
                let bits = x.bitPattern
                var upper = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16
                if !Float(bitPattern: upper << 16).isFinite { upper = bits >> 16 }
                return (upper, Float(bitPattern: upper << 16))
            }
            items.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { o in
                    for i in 0..<count {
                        let row = i * d
                        let base = (i / ExactIndex.panelWidth) * half * ExactIndex.panelWidth + i % ExactIndex.panelWidth
                        var residual = 0.0, norm = 0.0, roundedNorm = 0.0
                        for w in 0..<half {
                            // Low half: entry `w + half` rounded to bfloat16; the kernel reads it as `word << 16`.
                            var lowBits: UInt32 = 0
                            if w + half < d {
                                let value = x[row + w + half]
                                let r = round(value)
                                lowBits = r.bits
                                let e = Double(value) - Double(r.value)
                                residual += e * e
                                norm += Double(value) * Double(value)
                                roundedNorm += Double(r.value) * Double(r.value)
                            }
                            // High half: the kernel reads the whole word as a Float (no masking), so the low bits
                            // act as extra mantissa; pick the high half that makes that Float nearest to entry `w`.
                            let value = x[row + w]
                            let truncated = value.bitPattern >> 16
                            var bestWord: UInt32 = 0
                            var bestError = Double.infinity
                            for candidate in [truncated, (truncated &+ 1) & 0xFFFF, (truncated &- 1) & 0xFFFF] {
                                let word = candidate << 16 | lowBits
                                let read = Float(bitPattern: word)
                                guard read.isFinite else { continue }
                                let error = abs(Double(value) - Double(read))
                                if error < bestError { (bestWord, bestError) = (word, error) }
                            }
                            let read = Double(Float(bitPattern: bestWord))
                            residual += (Double(value) - read) * (Double(value) - read)
                            norm += Double(value) * Double(value)
                            roundedNorm += read * read
                            o[base + w * ExactIndex.panelWidth] = bestWord
                        }
                        maxResidual = Swift.max(maxResidual, residual)
                        maxNorm = Swift.max(maxNorm, norm)
                        maxRoundedNorm = Swift.max(maxRoundedNorm, roundedNorm)
                    }
                }
            }
            words = out
            // gamma_n = n u / (1 - n u) with n = d + 2 terms of rounding (products, sums, the two partial streams),
            // doubled; the 1.01 factor and the underflow term absorb the rounding of this computation.
            let u = 0x1p-24
            let n = Double(2 * d + 4)
            let gamma = n * u / (1 - n * u)
            boundPerQueryNorm =
                1.01 * (maxResidual.squareRoot() + gamma * (maxNorm.squareRoot() + maxRoundedNorm.squareRoot()))
        }
    }

    /// The approximate scores of one panel (items 0-3, 4-7) for a query broadcast into `hi`/`lo` (one SIMD4 per
    /// word): the word read as a Float times the entry-`w` broadcast plus `word << 16` times the entry-`w + words`
    /// one. SIMD4 (one SSE register) throughout: the package compiles for baseline x86-64.
    @inline(__always)
    static func panelScores(
        _ words: UnsafeRawPointer, wordsPerItem: Int, hi: UnsafeRawPointer, lo: UnsafeRawPointer
    ) -> (SIMD4<Float>, SIMD4<Float>) {
        var a0 = SIMD4<Float>(), a1 = SIMD4<Float>(), a2 = SIMD4<Float>(), a3 = SIMD4<Float>()
        var b0 = SIMD4<Float>(), b1 = SIMD4<Float>(), b2 = SIMD4<Float>(), b3 = SIMD4<Float>()
        var w = 0
        while w + 2 <= wordsPerItem {
            let qh0 = hi.loadUnaligned(fromByteOffset: w * 16, as: SIMD4<Float>.self)
            let ql0 = lo.loadUnaligned(fromByteOffset: w * 16, as: SIMD4<Float>.self)
            let qh1 = hi.loadUnaligned(fromByteOffset: w * 16 + 16, as: SIMD4<Float>.self)
            let ql1 = lo.loadUnaligned(fromByteOffset: w * 16 + 16, as: SIMD4<Float>.self)
            let v0 = words.loadUnaligned(fromByteOffset: w * 32, as: SIMD4<UInt32>.self)
            let v1 = words.loadUnaligned(fromByteOffset: w * 32 + 16, as: SIMD4<UInt32>.self)
            let v2 = words.loadUnaligned(fromByteOffset: w * 32 + 32, as: SIMD4<UInt32>.self)
            let v3 = words.loadUnaligned(fromByteOffset: w * 32 + 48, as: SIMD4<UInt32>.self)
            a0 += unsafeBitCast(v0, to: SIMD4<Float>.self) * qh0
            a1 += unsafeBitCast(v1, to: SIMD4<Float>.self) * qh0
            a2 += unsafeBitCast(v0 &<< 16, to: SIMD4<Float>.self) * ql0
            a3 += unsafeBitCast(v1 &<< 16, to: SIMD4<Float>.self) * ql0
            b0 += unsafeBitCast(v2, to: SIMD4<Float>.self) * qh1
            b1 += unsafeBitCast(v3, to: SIMD4<Float>.self) * qh1
            b2 += unsafeBitCast(v2 &<< 16, to: SIMD4<Float>.self) * ql1
            b3 += unsafeBitCast(v3 &<< 16, to: SIMD4<Float>.self) * ql1
            w += 2
        }
        if w < wordsPerItem {
            let qh0 = hi.loadUnaligned(fromByteOffset: w * 16, as: SIMD4<Float>.self)
            let ql0 = lo.loadUnaligned(fromByteOffset: w * 16, as: SIMD4<Float>.self)
            let v0 = words.loadUnaligned(fromByteOffset: w * 32, as: SIMD4<UInt32>.self)
            let v1 = words.loadUnaligned(fromByteOffset: w * 32 + 16, as: SIMD4<UInt32>.self)
            a0 += unsafeBitCast(v0, to: SIMD4<Float>.self) * qh0
            a1 += unsafeBitCast(v1, to: SIMD4<Float>.self) * qh0
            a2 += unsafeBitCast(v0 &<< 16, to: SIMD4<Float>.self) * ql0
            a3 += unsafeBitCast(v1 &<< 16, to: SIMD4<Float>.self) * ql0
        }
        return ((a0 + a2) + (b0 + b2), (a1 + a3) + (b1 + b3))
    }

    /// The top `kept` items of one query into its heap (`hs`/`hi`, capacity `kept`, initially empty), using the
    /// bfloat16 filter. `scratch` holds at least `kept + 8` floats; `broadcast` at least `2 * 4 * wordsPerItem`.
    func searchSingleFiltered(
        query: UnsafePointer<Float>, items itemBase: UnsafePointer<Float>, rounded: UnsafePointer<UInt32>,
        heapScores hs: UnsafeMutablePointer<Float>, heapItems hix: UnsafeMutablePointer<Int32>, heapCount: inout Int,
        kept: Int, scratch: UnsafeMutablePointer<Float>, broadcast: UnsafeMutablePointer<Float>
    ) {
        let d = dimension, n = count
        let wpi = roundedItems.wordsPerItem
        // The first `kept` items enter the heap unconditionally (exact scores).
        // (Whole groups of 4 rows, as `sgemv` groups them over the whole matrix: bit-identical scores.)
        BLAS.sgemv(
            .none, m: Swift.min(n, (kept + 3) & ~3), n: d, alpha: 1, a: itemBase, lda: d, x: query, beta: 0, y: scratch)
        Self.scan(scratch, count: kept, firstItem: 0, heapScores: hs, heapItems: hix, heapCount: &heapCount, capacity: kept)
        guard kept < n, kept > 0 else { return }
        // Query broadcasts: word w -> hi = q[w], lo = q[w + wpi] (0 past d).
        var normSquared = 0.0
        for w in 0..<wpi {
            let h = query[w]
            let l: Float = w + wpi < d ? query[w + wpi] : 0
            normSquared += Double(h) * Double(h) + Double(l) * Double(l)
            for t in 0..<4 {
                broadcast[w * 4 + t] = h
                broadcast[(wpi + w) * 4 + t] = l
            }
        }
        let margin = Float(normSquared.squareRoot() * roundedItems.boundPerQueryNorm + 0x1p-120)
        var threshold = hs[0]
        var cut = threshold - margin
        var cutSplat = SIMD4<Float>(repeating: cut)
        let hiRaw = UnsafeRawPointer(broadcast), loRaw = UnsafeRawPointer(broadcast + wpi * 4)
        let panelStride = wpi * 8
        var p = kept / Self.panelWidth
        let panels = roundedItems.panelCount
        let exact = scratch + ((kept + 3) & ~3)
        while p < panels {
            let (low, high) = Self.panelScores(
                UnsafeRawPointer(rounded + p * panelStride), wordsPerItem: wpi, hi: hiRaw, lo: loRaw)
            if any((low .>= cutSplat) .| (high .>= cutSplat)) {
                for t in 0..<8 where (t < 4 ? low[t] : high[t - 4]) >= cut {
                    let item = p * 8 + t
                    if item < kept || item >= n { continue }
                    // The aligned group of 4 rows `sgemv` scores together over the whole matrix (the rows past the
                    // last full group form one short group), so the score is bit-identical to the fp32 paths'.
                    let group = item & ~3
                    let rows = Swift.min(4, n - group)
                    BLAS.sgemv(.none, m: rows, n: d, alpha: 1, a: itemBase + group * d, lda: d, x: query, beta: 0, y: exact)
                    let score = exact[item - group]
                    if score > threshold {
                        hs[0] = score
                        hix[0] = Int32(item)
                        Self.siftDown(hs, hix, count: kept, from: 0)
                        threshold = hs[0]
                        cut = threshold - margin
                        cutSplat = SIMD4(repeating: cut)
                    }
                }
            }
            p += 1
        }
    }
}
