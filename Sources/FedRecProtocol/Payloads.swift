public import FedRecFederation
public import FedRecTensor

/// Little-endian binary writer for the plaintexts that go inside envelopes.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func raw(_ values: [UInt8]) { bytes += values }
    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func f32(_ value: Float) { u32(value.bitPattern) }
    mutating func floats(_ values: [Float]) {
        #if _endian(little)
            values.withUnsafeBytes { bytes += $0 }
        #else
            for v in values { f32(v) }
        #endif
    }
    mutating func int32s(_ values: [Int32]) {
        for v in values { u32(UInt32(bitPattern: v)) }
    }
    /// The precision byte of a payload header.
    mutating func precision(_ precision: WirePrecision) { u8(precision == .float32 ? 0 : 1) }
    /// `values` in `precision` (bfloat16: each rounded to nearest even, 2 bytes little-endian).
    mutating func values<Values: Collection>(_ values: Values, precision: WirePrecision) where Values.Element == Float {
        switch precision {
        case .float32:
            #if _endian(little)
                let copied: Void? = values.withContiguousStorageIfAvailable { bytes += UnsafeRawBufferPointer($0) }
                if copied == nil { for v in values { f32(v) } }
            #else
                for v in values { f32(v) }
            #endif
        case .bfloat16:
            let start = bytes.count
            let count = values.count
            bytes.append(contentsOf: repeatElement(0, count: 2 * count))
            bytes.withUnsafeMutableBufferPointer { out in
                var at = start
                for v in values {
                    let half = WirePrecision.bfloat16Bits(v)
                    out[at] = UInt8(truncatingIfNeeded: half)
                    out[at + 1] = UInt8(truncatingIfNeeded: half >> 8)
                    at += 2
                }
            }
        }
    }
}

/// Bounds-checked little-endian reader; every failure is `malformedPayload`.
struct ByteReader {
    let bytes: [UInt8]
    var offset = 0
    let what: String

    init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    func fail(_ why: String) -> ProtocolError { ProtocolError(code: .malformedPayload, message: "\(what): \(why)") }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, bytes.count - offset >= count else {
            throw fail("truncated at byte \(offset) (need \(count) more, \(bytes.count - offset) left)")
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }
    mutating func u8() throws -> UInt8 { try take(1).first! }
    mutating func u32() throws -> UInt32 {
        try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    mutating func u64() throws -> UInt64 {
        try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    mutating func f32() throws -> Float { Float(bitPattern: try u32()) }
    mutating func floats(_ count: Int) throws -> [Float] {
        let slice = try take(count * 4)
        #if _endian(little)
            // Straight copy, without zero-filling first (these arrays are up to a whole model).
            return [Float](unsafeUninitializedCapacity: count) { out, initialized in
                slice.withUnsafeBytes { UnsafeMutableRawBufferPointer(out).copyMemory(from: $0) }
                initialized = count
            }
        #else
            var values = [Float](repeating: 0, count: count)
            for i in 0..<count {
                let b = slice.startIndex + 4 * i
                values[i] = Float(bitPattern: (0..<4).reversed().reduce(0) { $0 << 8 | UInt32(slice[b + $1]) })
            }
            return values
        #endif
    }
    /// `count` values stored in `precision`, as float32.
    mutating func values(_ count: Int, precision: WirePrecision) throws -> [Float] {
        guard precision == .bfloat16 else { return try floats(count) }
        let slice = try take(count * 2)
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            slice.withUnsafeBufferPointer { b in
                for i in 0..<count {
                    out[i] = WirePrecision.float(bfloat16Bits: UInt16(b[2 * i]) | UInt16(b[2 * i + 1]) << 8)
                }
            }
            initialized = count
        }
    }
    /// The precision byte of a payload header (0 float32, 1 bfloat16).
    mutating func precision() throws -> WirePrecision {
        switch try u8() {
        case 0: return .float32
        case 1: return .bfloat16
        case let other: throw fail("unknown value precision \(other)")
        }
    }
    mutating func int32s(_ count: Int) throws -> [Int32] {
        var values: [Int32] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(Int32(bitPattern: try u32())) }
        return values
    }
    func expectEnd() throws {
        guard offset == bytes.count else { throw fail("\(bytes.count - offset) trailing byte(s)") }
    }
}

/// The expected shapes of a run's payloads (from the model configuration both sides agree on at enrolment).
public struct PayloadShapes: Sendable, Hashable {
    public var userTowerCount: Int
    public var itemRows: Int
    public var dimension: Int

    public init(userTowerCount: Int, itemRows: Int, dimension: Int) {
        self.userTowerCount = userTowerCount
        self.itemRows = itemRows
        self.dimension = dimension
    }

    /// Bytes of a round assignment's plaintext.
    public var globalModelByteCount: Int {
        GlobalModelPayload.headerByteCount + 4 * (userTowerCount + itemRows * dimension)
    }
    /// Largest plaintext of a client update (dense gradient).
    public var maximumUpdateByteCount: Int {
        ClientUpdatePayload.headerByteCount + 4 * (userTowerCount + itemRows * dimension) + 4 * itemRows + 16
    }
}

/// The plaintext of a round assignment: the global user tower (flattened), the item-embedding matrix, and the
/// round's terms (training seed and training configuration), sealed with the model so that no one on the path
/// can change what clients train with (the clip norm that bounds their update under DP, above all).
///
/// Layout: `"FRGM"` | round (u64) | user-tower count (u32) | item rows (u32) | dimension (u32) | precision (u8:
/// 0 float32, 1 bfloat16) | user tower (count values) | item embeddings (rows x dimension values, row-major) |
/// seed (u64) | training configuration length (u32, at most `maximumTrainingBytes`) | training configuration
/// (UTF-8 JSON) | run terms (32 bytes, `Wire.runTermsDigest`) | [a `SecureRoundAssignment` section in
/// secure-aggregation rounds]. Little-endian. Clients
/// answer in the precision of the assignment.
public struct GlobalModelPayload: Sendable, Equatable {
    static let magic: [UInt8] = Array("FRGM".utf8)
    static let headerByteCount = 4 + 8 + 12 + 1

    public var round: Int
    /// As decoded: already rounded to `precision`.
    public var userTower: [Float]
    public var itemEmbeddings: Matrix
    /// How the values travel.
    public var precision: WirePrecision
    /// The round's training seed (clients derive their example order from it).
    public var seed: UInt64
    /// The round's `ClientTrainingConfiguration` as JSON (the clip norm moves under adaptive clipping).
    public var trainingConfigurationJSON: String
    /// `Wire.runTermsDigest` of the model configuration and fold the enrol answer gave (32 bytes).
    public var runTerms: [UInt8]
    /// Present in secure-aggregation rounds.
    public var secure: SecureRoundAssignment?

    /// Longest training configuration accepted (a few hundred bytes in practice).
    public static let maximumTrainingBytes = 1 << 16

    public init(
        round: Int, userTower: [Float], itemEmbeddings: Matrix, precision: WirePrecision = .float32, seed: UInt64 = 0,
        trainingConfigurationJSON: String = "", runTerms: [UInt8] = [UInt8](repeating: 0, count: 32),
        secure: SecureRoundAssignment? = nil
    ) {
        precondition(runTerms.count == 32, "run terms are a 32-byte digest")
        self.round = round
        self.userTower = userTower
        self.itemEmbeddings = itemEmbeddings
        self.precision = precision
        self.seed = seed
        self.trainingConfigurationJSON = trainingConfigurationJSON
        self.runTerms = runTerms
        self.secure = secure
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(
            capacity: Self.headerByteCount + precision.bytesPerValue * (userTower.count + itemEmbeddings.count))
        w.raw(Self.magic)
        w.u64(UInt64(round))
        w.u32(UInt32(userTower.count))
        w.u32(UInt32(itemEmbeddings.rows))
        w.u32(UInt32(itemEmbeddings.columns))
        w.precision(precision)
        w.values(userTower, precision: precision)
        w.values(itemEmbeddings.storage, precision: precision)
        w.u64(seed)
        let training = Array(trainingConfigurationJSON.utf8)
        precondition(training.count <= Self.maximumTrainingBytes, "training configuration too long")
        w.u32(UInt32(training.count))
        w.raw(training)
        w.raw(runTerms)
        secure?.write(to: &w)
        return w.bytes
    }

    /// The run terms of an encoded payload, read by the sizes it announces itself, whatever shapes it has (nil
    /// when it is too malformed to find them). A client compares them before decoding: a payload of other
    /// shapes then tells an altered enrol answer (other terms) from a faulty coordinator (the same terms).
    public static func runTerms(in bytes: [UInt8]) -> [UInt8]? {
        var r = ByteReader(bytes, what: "round assignment")
        guard (try? r.take(4)).map(Array.init) == Self.magic, (try? r.u64()) != nil,
            let count = try? r.u32(), let rows = try? r.u32(), let d = try? r.u32(), let precision = try? r.precision()
        else { return nil }
        // Three u32 counts: rows x d + count fits in 64 bits; no more values than bytes, so their byte count
        // fits in an Int.
        let values = UInt64(rows) * UInt64(d) + UInt64(count)
        guard values <= UInt64(bytes.count),
            (try? r.take(Int(values) * precision.bytesPerValue)) != nil, (try? r.u64()) != nil,
            let trainingLength = try? r.u32(), Int(trainingLength) <= Self.maximumTrainingBytes,
            (try? r.take(Int(trainingLength))) != nil, let terms = try? r.take(32)
        else { return nil }
        return Array(terms)
    }

    /// Decodes and checks shapes against `shapes`, the round against `round`, and that every value is finite.
    public init(decoding bytes: [UInt8], shapes: PayloadShapes, round expectedRound: Int) throws {
        var r = ByteReader(bytes, what: "round assignment")
        guard Array(try r.take(4)) == Self.magic else { throw r.fail("bad magic") }
        // A u64 beyond Int.max cannot be this round (converting it unchecked would trap: found by fuzzing).
        let wireRound = try r.u64()
        guard let round = Int(exactly: wireRound), round == expectedRound else {
            throw ProtocolError(
                code: .unexpectedMessage, message: "assignment of round \(wireRound), expected \(expectedRound)",
                round: expectedRound)
        }
        let (count, rows, d) = (Int(try r.u32()), Int(try r.u32()), Int(try r.u32()))
        guard count == shapes.userTowerCount, rows == shapes.itemRows, d == shapes.dimension else {
            throw ProtocolError(
                code: .wrongShape,
                message: "assignment shapes \(count) / \(rows)x\(d), expected \(shapes.userTowerCount) / "
                    + "\(shapes.itemRows)x\(shapes.dimension)", round: round)
        }
        let precision = try r.precision()
        let tower = try r.values(count, precision: precision)
        let items = try r.values(rows * d, precision: precision)
        let seed = try r.u64()
        let trainingLength = Int(try r.u32())
        guard trainingLength <= Self.maximumTrainingBytes else {
            throw r.fail("training configuration of \(trainingLength) bytes (at most \(Self.maximumTrainingBytes))")
        }
        guard let training = String(validating: try r.take(trainingLength), as: UTF8.self) else {
            throw r.fail("training configuration is not UTF-8")
        }
        let runTerms = Array(try r.take(32))
        let secure = r.offset < r.bytes.count ? try SecureRoundAssignment(reading: &r) : nil
        try r.expectEnd()
        guard FlatVector.isFinite(tower), FlatVector.isFinite(items) else {
            throw ProtocolError(code: .nonFinite, message: "round assignment holds non-finite values", round: round)
        }
        self.init(
            round: round, userTower: tower, itemEmbeddings: Matrix(rows: rows, columns: d, storage: items),
            precision: precision, seed: seed, trainingConfigurationJSON: training, runTerms: runTerms, secure: secure)
    }
}

/// The plaintext of a client update.
///
/// Layout: `"FRUP"` | delta count (u32) | gradient form (u8: 0 dense, 1 row-sparse) | item rows (u32) |
/// dimension (u32) | stored rows (u32; row-sparse only meaningful) | example count (u64) | mean loss (f32) |
/// precision (u8: 0 float32, 1 bfloat16; of the delta and gradient values) | clipping (u8: 0 not clipped by the
/// client, 1 clipped, 2 within the clip norm; `ClientUpdate.unclipped`) | delta | [row indices (i32 x stored
/// rows), row-sparse only] | gradient values.
///
/// The delta is `form (u8)` then either (0, dense) count values, or (1, block-sparse) stored blocks (u32) |
/// block indices (u32 x stored, strictly increasing) | 64 values per stored block, the last block cut at
/// `count`. A user-tower delta is mostly zero blocks (only the client's history rows of the history table move),
/// so block-sparse is chosen whenever it is smaller; decoding always yields the dense delta.
public enum ClientUpdatePayload {
    static let magic: [UInt8] = Array("FRUP".utf8)
    static let headerByteCount = 4 + 4 + 1 + 12 + 8 + 4 + 1 + 1
    /// Floats per block of the block-sparse delta form.
    static let deltaBlock = 64

    /// Indices of the blocks of `delta` holding a non-zero value.
    static func nonZeroBlocks(_ delta: [Float]) -> [UInt32] {
        var blocks: [UInt32] = []
        delta.withUnsafeBufferPointer { x in
            var start = 0
            var block: UInt32 = 0
            while start < x.count {
                let end = min(start + deltaBlock, x.count)
                // OR of the magnitudes' bit patterns: non-zero iff some element is non-zero (-0 counts as zero).
                // Branch-free, so it vectorises.
                var bits: UInt32 = 0
                for i in start..<end { bits |= x[i].bitPattern & 0x7fff_ffff }
                if bits != 0 { blocks.append(block) }
                start = end
                block += 1
            }
        }
        return blocks
    }

    static func writeDelta(_ delta: [Float], precision: WirePrecision, to w: inout ByteWriter) {
        let blocks = nonZeroBlocks(delta)
        let blockCount = (delta.count + deltaBlock - 1) / deltaBlock
        let size = precision.bytesPerValue
        guard blocks.count * (deltaBlock * size + 4) + 4 < delta.count * size, blocks.count < blockCount else {
            w.u8(0)
            w.values(delta, precision: precision)
            return
        }
        w.u8(1)
        w.u32(UInt32(blocks.count))
        for b in blocks { w.u32(b) }
        for b in blocks {
            let start = Int(b) * deltaBlock
            w.values(delta[start..<min(start + deltaBlock, delta.count)], precision: precision)
        }
    }

    static func readDelta(count: Int, precision: WirePrecision, from r: inout ByteReader) throws -> [Float] {
        switch try r.u8() {
        case 0:
            return try r.values(count, precision: precision)
        case 1:
            let blockCount = (count + deltaBlock - 1) / deltaBlock
            let stored = Int(try r.u32())
            guard stored <= blockCount else { throw r.fail("delta stores \(stored) blocks of \(blockCount)") }
            var indices: [Int] = []
            indices.reserveCapacity(stored)
            for _ in 0..<stored {
                let b = Int(try r.u32())
                guard b < blockCount, b > indices.last ?? -1 else {
                    throw r.fail("delta block index \(b) out of range or not increasing")
                }
                indices.append(b)
            }
            var delta = [Float](repeating: 0, count: count)
            for b in indices {
                let start = b * deltaBlock
                let end = min(start + deltaBlock, count)
                let values = try r.values(end - start, precision: precision)
                delta.withUnsafeMutableBufferPointer { out in
                    for (k, v) in values.enumerated() { out[start + k] = v }
                }
            }
            return delta
        case let form:
            throw r.fail("unknown delta form \(form)")
        }
    }

    /// `update` in `precision` (the decoded update then equals `update.rounded(to: precision)`).
    public static func encode(_ update: ClientUpdate, precision: WirePrecision = .float32) -> [UInt8] {
        let g = update.itemEmbeddingGradient
        var w = ByteWriter(
            capacity: headerByteCount + precision.bytesPerValue * (update.userTowerDelta.count + g.storedValues.count)
                + 4 * (g.storedValues.count / max(1, g.columns)))
        w.raw(magic)
        w.u32(UInt32(update.userTowerDelta.count))
        switch g {
        case .dense(let m):
            w.u8(0)
            w.u32(UInt32(m.rows))
            w.u32(UInt32(m.columns))
            w.u32(UInt32(m.rows))
        case .rowSparse(let s):
            w.u8(1)
            w.u32(UInt32(s.tableRows))
            w.u32(UInt32(s.columns))
            w.u32(UInt32(s.rowIndices.count))
        }
        w.u64(UInt64(max(update.exampleCount, 0)))
        w.f32(update.meanLoss)
        w.precision(precision)
        w.u8(update.unclipped.map { $0 ? 2 : 1 } ?? 0)
        writeDelta(update.userTowerDelta, precision: precision, to: &w)
        if case .rowSparse(let s) = g { w.int32s(s.rowIndices) }
        w.values(g.storedValues, precision: precision)
        return w.bytes
    }

    /// Decodes an update, checking every size against `shapes` before allocating, row indices against the
    /// catalogue, and that every value is finite. A row-sparse gradient is scattered into a dense matrix.
    public static func decode(_ bytes: [UInt8], shapes: PayloadShapes) throws -> ClientUpdate {
        var r = ByteReader(bytes, what: "client update")
        guard Array(try r.take(4)) == magic else { throw r.fail("bad magic") }
        let count = Int(try r.u32())
        let form = try r.u8()
        let (rows, d, stored) = (Int(try r.u32()), Int(try r.u32()), Int(try r.u32()))
        let examples = try r.u64()
        let loss = try r.f32()
        guard count == shapes.userTowerCount, rows == shapes.itemRows, d == shapes.dimension else {
            throw ProtocolError(
                code: .wrongShape,
                message: "update shapes \(count) / \(rows)x\(d), expected \(shapes.userTowerCount) / "
                    + "\(shapes.itemRows)x\(shapes.dimension)")
        }
        guard examples <= UInt64(Int32.max) else { throw r.fail("example count \(examples) out of range") }
        let precision = try r.precision()
        let unclipped: Bool?
        switch try r.u8() {
        case 0: unclipped = nil
        case 1: unclipped = false
        case 2: unclipped = true
        case let other: throw r.fail("unknown clipping report \(other)")
        }
        let delta = try readDelta(count: count, precision: precision, from: &r)
        let gradient: Matrix
        switch form {
        case 0:
            guard stored == rows else { throw r.fail("dense gradient stores \(stored) rows of \(rows)") }
            gradient = Matrix(rows: rows, columns: d, storage: try r.values(rows * d, precision: precision))
        case 1:
            guard stored <= rows else { throw r.fail("row-sparse gradient stores \(stored) rows of \(rows)") }
            let indices = try r.int32s(stored)
            let values = try r.values(stored * d, precision: precision)
            var dense = Matrix(rows: rows, columns: d)
            var seen = Set<Int32>()
            for (slot, row) in indices.enumerated() {
                guard row >= 0, Int(row) < rows, seen.insert(row).inserted else {
                    throw ProtocolError(
                        code: .wrongShape, message: "row-sparse gradient row \(row) invalid or repeated")
                }
                for j in 0..<d { dense.storage[Int(row) * d + j] = values[slot * d + j] }
            }
            gradient = dense
        default:
            throw r.fail("unknown gradient form \(form)")
        }
        try r.expectEnd()
        guard FlatVector.isFinite(delta), FlatVector.isFinite(gradient.storage), loss.isFinite else {
            throw ProtocolError(code: .nonFinite, message: "update holds non-finite values")
        }
        var update = ClientUpdate(
            userTowerDelta: delta, itemEmbeddingGradient: .dense(gradient), exampleCount: Int(examples),
            meanLoss: loss)
        update.unclipped = unclipped
        return update
    }
}
