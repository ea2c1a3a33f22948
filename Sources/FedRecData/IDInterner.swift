/// Maps id strings to dense indices in order of first appearance, without creating a `String`
/// for ids already seen when they are short (≤ 16 bytes, packed into two words).
///
/// Invariant: `ids[intern(x)] == x` and indices are `0..<ids.count` in first-appearance order.
struct IDInterner {
    /// Open-addressing table over short ids: `slots[h]` is `index + 1` of the id (0 = empty);
    /// keys are the id's bytes packed little-endian into two words plus the length.
    private var slots: [Int32]
    private var lows: [UInt64] = []
    private var highs: [UInt64] = []
    private var counts: [UInt8] = []
    private var mask: Int
    private var large: [String: Int32] = [:]
    private(set) var ids: [String] = []

    init(capacity: Int = 0) {
        var size = 64
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
        ids.reserveCapacity(capacity)
    }

    var count: Int { ids.count }

    @inline(__always)
    private static func pack(_ buffer: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> (UInt64, UInt64) {
        var low: UInt64 = 0
        var high: UInt64 = 0
        var k = start
        var shift: UInt64 = 0
        while k < end && shift < 64 {
            low |= UInt64(buffer[k]) << shift
            shift += 8
            k += 1
        }
        shift = 0
        while k < end {
            high |= UInt64(buffer[k]) << shift
            shift += 8
            k += 1
        }
        return (low, high)
    }

    @inline(__always)
    private static func hash(_ low: UInt64, _ high: UInt64, _ count: Int) -> Int {
        var h = low &* 0x9E37_79B9_7F4A_7C15 ^ (high &+ UInt64(count)) &* 0xC2B2_AE3D_27D4_EB4F
        h ^= h >> 29
        h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 32
        return Int(truncatingIfNeeded: h)
    }

    /// The slot holding the key, or the empty slot where it belongs.
    @inline(__always)
    private func probe(_ low: UInt64, _ high: UInt64, _ count: Int) -> Int {
        var slot = Self.hash(low, high, count) & mask
        while true {
            let entry = Int(slots[slot])
            if entry == 0 { return slot }
            let index = entry - 1
            if lows[index] == low && highs[index] == high && Int(counts[index]) == count { return slot }
            slot = (slot + 1) & mask
        }
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
        for index in lows.indices where counts[index] != UInt8.max {
            let slot = probe(lows[index], highs[index], Int(counts[index]))
            slots[slot] = Int32(index + 1)
        }
    }

    /// Records a new id; short ids also go into the open-addressing table.
    private mutating func insert(_ id: String, low: UInt64, high: UInt64, count: Int, short: Bool) -> Int32 {
        let index = Int32(ids.count)
        ids.append(id)
        lows.append(low)
        highs.append(high)
        counts.append(short ? UInt8(count) : UInt8.max)
        if short {
            if lows.count * 2 > slots.count { grow() }
            let slot = probe(low, high, count)
            slots[slot] = index + 1
        } else {
            large[id] = index
        }
        return index
    }

    /// The index of the id held in `buffer[start..<end]` (UTF-8), adding it when new.
    @inline(__always)
    mutating func intern(_ buffer: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int32 {
        let count = end - start
        guard count <= 16 else {
            return intern(String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<end]), as: UTF8.self))
        }
        let (low, high) = Self.pack(buffer, start, end)
        let slot = probe(low, high, count)
        if slots[slot] != 0 { return slots[slot] - 1 }
        let id = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<end]), as: UTF8.self)
        return insert(id, low: low, high: high, count: count, short: true)
    }

    /// The index of the id held in `buffer[start..<end]` (UTF-8), or nil.
    @inline(__always)
    func lookup(_ buffer: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int32? {
        let count = end - start
        guard count <= 16 else {
            return large[String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<end]), as: UTF8.self)]
        }
        let (low, high) = Self.pack(buffer, start, end)
        let entry = slots[probe(low, high, count)]
        return entry == 0 ? nil : entry - 1
    }

    /// The index of `id`, adding it when new.
    mutating func intern(_ id: String) -> Int32 {
        let original = id
        var id = id
        return id.withUTF8 { utf8 in
            if utf8.count > 16 {
                if let index = large[original] { return index }
                return insert(original, low: 0, high: 0, count: utf8.count, short: false)
            }
            let (low, high) = Self.pack(utf8, 0, utf8.count)
            let slot = probe(low, high, utf8.count)
            if slots[slot] != 0 { return slots[slot] - 1 }
            return insert(original, low: low, high: high, count: utf8.count, short: true)
        }
    }

    /// The index of `id`, or nil.
    func lookup(_ id: String) -> Int32? {
        var id = id
        return id.withUTF8 { lookup($0, 0, $0.count) }
    }
}
