import FedRecSecurity

/// The binary framing shared by every secure-aggregation message.
///
/// Layout: message tag (UInt8) | format version (UInt8, `SecureAggregationWire.version`) | round (UInt64) | body.
/// Integers are big-endian except the bulk `UInt32` words of a masked input, which are little-endian. Every
/// count is bounded before anything is allocated, and a message must be consumed exactly (no trailing bytes).
enum SecureAggregationWire {
    static let version: UInt8 = 1

    enum Tag: UInt8 {
        case parameters = 1
        case advertisedKeys = 2
        case roster = 3
        case encryptedShare = 4
        case encryptedShares = 5
        case maskedInput = 6
        case unmaskRequest = 7
        case unmaskResponse = 8

        var name: String {
            switch self {
            case .parameters: "parameters"
            case .advertisedKeys: "advertised keys"
            case .roster: "roster"
            case .encryptedShare: "encrypted share"
            case .encryptedShares: "encrypted shares"
            case .maskedInput: "masked input"
            case .unmaskRequest: "unmask request"
            case .unmaskResponse: "unmask response"
            }
        }
    }
}

/// Appends big-endian fields to a byte array.
struct WireWriter {
    private(set) var bytes: [UInt8] = []

    init(tag: SecureAggregationWire.Tag, round: UInt64, capacity: Int = 64) {
        bytes.reserveCapacity(capacity)
        u8(tag.rawValue)
        u8(SecureAggregationWire.version)
        u64(round)
    }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func index(_ value: Int) { u32(UInt32(value)) }
    mutating func raw<Bytes: Sequence>(_ value: Bytes) where Bytes.Element == UInt8 { bytes.append(contentsOf: value) }

    /// `words` as little-endian `UInt32`s (a plain copy on little-endian hosts).
    mutating func wordsLittleEndian(_ words: [UInt32]) {
        #if _endian(little)
            words.withUnsafeBytes { bytes.append(contentsOf: $0) }
        #else
            for word in words { withUnsafeBytes(of: word.littleEndian) { bytes.append(contentsOf: $0) } }
        #endif
    }
}

/// Reads fields from a message; every failure is `malformedMessage` naming the message and the field.
struct WireReader {
    private let bytes: [UInt8]
    private var offset = 0
    private let what: String
    private(set) var round: UInt64

    /// Checks tag and version and reads the round.
    init(_ bytes: [UInt8], expecting tag: SecureAggregationWire.Tag) throws {
        self.bytes = bytes
        self.what = tag.name
        self.round = 0
        let found = try u8("tag")
        guard found == tag.rawValue else {
            throw malformed("field 'tag': expected \(tag.rawValue) (\(tag.name)), got \(found)")
        }
        let version = try u8("version")
        guard version == SecureAggregationWire.version else {
            throw malformed("field 'version': expected \(SecureAggregationWire.version), got \(version)")
        }
        self.round = try u64("round")
    }

    func malformed(_ message: String) -> SecureAggregationError {
        SecureAggregationError(code: .malformedMessage, message: "\(what): \(message)")
    }

    var remaining: Int { bytes.count - offset }

    private mutating func take(_ count: Int, _ field: String) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else {
            throw malformed("field '\(field)': truncated (needs \(count) bytes at offset \(offset), \(remaining) left)")
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    private mutating func integer<T: FixedWidthInteger>(_ type: T.Type, _ field: String) throws -> T {
        let slice = try take(MemoryLayout<T>.size, field)
        return slice.reduce(T(0)) { $0 << 8 | T($1) }
    }

    mutating func u8(_ field: String) throws -> UInt8 { try integer(UInt8.self, field) }
    mutating func u16(_ field: String) throws -> UInt16 { try integer(UInt16.self, field) }
    mutating func u32(_ field: String) throws -> UInt32 { try integer(UInt32.self, field) }
    mutating func u64(_ field: String) throws -> UInt64 { try integer(UInt64.self, field) }

    /// A participant index below `limit`.
    mutating func index(_ field: String, below limit: Int) throws -> Int {
        let value = Int(try u32(field))
        guard value < limit else { throw malformed("field '\(field)': \(value) is not below \(limit)") }
        return value
    }

    /// A count in `range`, also bounded by the bytes left (`elementSize` each) so that no oversized
    /// allocation happens before the length check.
    mutating func count(_ field: String, in range: ClosedRange<Int>, elementSize: Int, width: Int = 4) throws -> Int {
        let value: Int
        switch width {
        case 1: value = Int(try u8(field))
        case 2: value = Int(try u16(field))
        default: value = Int(try u32(field))
        }
        guard range.contains(value) else {
            throw malformed("field '\(field)': \(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        guard value * elementSize <= remaining else {
            throw malformed(
                "field '\(field)': \(value) entries need \(value * elementSize) bytes, \(remaining) left (truncated)")
        }
        return value
    }

    mutating func raw(_ count: Int, _ field: String) throws -> [UInt8] { Array(try take(count, field)) }

    /// `count` bytes straight into zeroing memory (no intermediate array).
    mutating func secret(_ count: Int, _ field: String) throws -> SecureBytes {
        SecureBytes(copying: try take(count, field))
    }

    mutating func wordsLittleEndian(_ count: Int, _ field: String) throws -> [UInt32] {
        let slice = try take(count * 4, field)
        var words = [UInt32](repeating: 0, count: count)
        words.withUnsafeMutableBytes { target in
            slice.withUnsafeBytes { source in target.copyMemory(from: source) }
        }
        #if _endian(big)
            for index in words.indices { words[index] = UInt32(littleEndian: words[index]) }
        #endif
        return words
    }

    /// Throws unless every byte was read.
    func finish() throws {
        guard remaining == 0 else { throw malformed("\(remaining) trailing byte(s) after the last field") }
    }
}
