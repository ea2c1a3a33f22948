import FedRecSecurity
import FedRecTensor

/// What every party of one SecAgg+ round must agree on. The coordinator chooses it; clients receive it with the
/// round assignment. Its SHA-256 digest (`digest`) is bound into every signature and every encrypted share, so
/// parties holding different parameters (a different participant list, round or graph) cannot interoperate.
///
/// Invariants checked by `validate()`:
/// - `participants` holds 2...`maximumParticipantCount` distinct client ids; a client's index is its position.
/// - `neighbourCount` k is `participants.count - 1` (complete graph, classic SecAgg) or an even number in
///   2...`participants.count - 2` (SecAgg+ Harary graph); in both cases k <= 255, because Shamir shares are
///   numbered 1...255 (libgfshare, GF(2^8)): a neighbourhood holds at most 255 members besides its owner.
/// - `threshold` t satisfies k/2 < t <= k: any t neighbours reconstruct a secret, and two disjoint sets of t
///   neighbours cannot exist, so an honest server's requests cannot collect both secrets of one client from
///   honest neighbours (an actively malicious one, sending different requests to different clients, can: see
///   the DocC threat model).
/// - `vectorLength` in 1...`maximumVectorLength`; `clipRange` and `maximumWeight` finite and positive.
public struct SecureAggregationParameters: Sendable, Codable, Hashable {
    /// The largest cohort (participant indices travel as `UInt32`; quantisation keeps >= 16 bits per element).
    public static let maximumParticipantCount = 1 << 16
    /// The largest vector (elements, excluding the weight element).
    public static let maximumVectorLength = 1 << 26

    public var round: UInt64
    /// Ordered client ids; index = position.
    public var participants: [ClientID]
    /// k: neighbours per client.
    public var neighbourCount: Int
    /// t: shares needed to reconstruct a client's secret.
    public var threshold: Int
    /// L: elements per input vector.
    public var vectorLength: Int
    /// c: every element is clipped to [-c, c] before quantisation.
    public var clipRange: Float
    /// W: weights (example counts) are capped at W.
    public var maximumWeight: Float
    /// Seed of the neighbourhood graph's random permutation (public; chosen by the coordinator).
    public var graphSeed: UInt64

    /// `neighbourCount` and `threshold` default to `defaultNeighbourCount` and `defaultThreshold`.
    public init(
        round: UInt64, participants: [ClientID], vectorLength: Int, clipRange: Float, maximumWeight: Float,
        graphSeed: UInt64, neighbourCount: Int? = nil, threshold: Int? = nil
    ) {
        self.round = round
        self.participants = participants
        self.vectorLength = vectorLength
        self.clipRange = clipRange
        self.maximumWeight = maximumWeight
        self.graphSeed = graphSeed
        let k = neighbourCount ?? Self.defaultNeighbourCount(participantCount: participants.count)
        self.neighbourCount = k
        self.threshold = threshold ?? Self.defaultThreshold(neighbourCount: k)
    }

    /// SecAgg+ default: k = 2 * ceil(log2 n) (even, of order log n), or n - 1 (the complete graph) when that is
    /// not smaller. n = 8: 6, n = 32: 10, n = 128: 14, n = 1000: 20.
    public static func defaultNeighbourCount(participantCount n: Int) -> Int {
        guard n >= 2 else { return max(n - 1, 0) }
        let k = 2 * ceilLog2(n)
        return k >= n - 1 ? n - 1 : min(k, 254)
    }

    /// ceil(k / 2) + 1, capped at k: the smallest threshold above k/2 plus one share of slack for k >= 2.
    public static func defaultThreshold(neighbourCount k: Int) -> Int {
        max(1, min(k, (k + 1) / 2 + 1))
    }

    /// The fewest clients that may survive a stage before the round aborts: max(2, t) (Bonawitz et al. abort
    /// below t; a sum of one input is that input).
    public var minimumSurvivorCount: Int { max(2, threshold) }

    /// The quantiser of this round (bits per element from the cohort size; see `SecureAggregationQuantizer`).
    public var quantizer: SecureAggregationQuantizer {
        SecureAggregationQuantizer(
            participantCount: participants.count, clipRange: clipRange, maximumWeight: maximumWeight)
    }

    /// Throws `invalidParameters` naming the first violated invariant (see the type's documentation).
    public func validate() throws {
        func bad(_ message: String) -> SecureAggregationError {
            SecureAggregationError(code: .invalidParameters, message: message)
        }
        let n = participants.count
        guard (2...Self.maximumParticipantCount).contains(n) else {
            throw bad("participants: \(n) client(s); need 2...\(Self.maximumParticipantCount)")
        }
        var seen = Set<ClientID>()
        for (index, id) in participants.enumerated() {
            guard PublicIdentity.isValidName(id) else {
                throw bad("participants[\(index)]: '\(id)' is not a valid client id")
            }
            guard seen.insert(id).inserted else { throw bad("participants[\(index)]: '\(id)' is listed twice") }
        }
        let k = neighbourCount
        guard k >= 1, k <= n - 1, k <= SecretSharing.maximumShareCount else {
            throw bad(
                "neighbourCount: \(k); need 1...\(min(n - 1, SecretSharing.maximumShareCount)) "
                    + "(shares are numbered 1...255)")
        }
        guard k == n - 1 || k % 2 == 0 else {
            throw bad("neighbourCount: \(k) must be even (Harary graph) unless it is n - 1 = \(n - 1)")
        }
        guard threshold <= k, 2 * threshold > k else {
            throw bad("threshold: \(threshold); need k/2 < t <= k with k = \(k)")
        }
        guard (1...Self.maximumVectorLength).contains(vectorLength) else {
            throw bad("vectorLength: \(vectorLength); need 1...\(Self.maximumVectorLength)")
        }
        guard clipRange.isFinite, clipRange > 0 else { throw bad("clipRange: \(clipRange) must be finite and > 0") }
        guard maximumWeight.isFinite, maximumWeight > 0 else {
            throw bad("maximumWeight: \(maximumWeight) must be finite and > 0")
        }
    }

    /// The neighbourhood graph of this round.
    public var graph: NeighbourGraph {
        NeighbourGraph(participantCount: participants.count, neighbourCount: neighbourCount, seed: graphSeed)
    }

    /// SHA-256 of `serialized()`.
    public func digest() throws -> [UInt8] {
        do { return try SHA256.hash(serialized()) } catch {
            throw SecureAggregationError(code: .cryptographicFailure, message: "SHA-256 failed: \(error)")
        }
    }

    // MARK: Wire form

    /// tag | version | round | graphSeed (UInt64) | k (UInt16) | t (UInt16) | L (UInt32) | c (Float bits, UInt32)
    /// | W (Float bits, UInt32) | n (UInt32) | n x (id length UInt8, id UTF-8).
    public func serialized() -> [UInt8] {
        var writer = WireWriter(tag: .parameters, round: round, capacity: 40 + participants.count * 16)
        writer.u64(graphSeed)
        writer.u16(UInt16(clamping: neighbourCount))
        writer.u16(UInt16(clamping: threshold))
        writer.u32(UInt32(clamping: vectorLength))
        writer.u32(clipRange.bitPattern)
        writer.u32(maximumWeight.bitPattern)
        writer.u32(UInt32(clamping: participants.count))
        for id in participants {
            let bytes = Array(id.utf8.prefix(255))
            writer.u8(UInt8(bytes.count))
            writer.raw(bytes)
        }
        return writer.bytes
    }

    /// Parses and validates (`validate()`); throws `malformedMessage` or `invalidParameters` naming the field.
    public init(serialized bytes: [UInt8]) throws {
        var reader = try WireReader(bytes, expecting: .parameters)
        round = reader.round
        graphSeed = try reader.u64("graphSeed")
        neighbourCount = Int(try reader.u16("neighbourCount"))
        threshold = Int(try reader.u16("threshold"))
        vectorLength = Int(try reader.u32("vectorLength"))
        clipRange = Float(bitPattern: try reader.u32("clipRange"))
        maximumWeight = Float(bitPattern: try reader.u32("maximumWeight"))
        let count = try reader.count(
            "participants", in: 2...Self.maximumParticipantCount, elementSize: 2)
        var participants: [ClientID] = []
        participants.reserveCapacity(count)
        for index in 0..<count {
            let length = Int(try reader.u8("participants[\(index)].length"))
            let raw = try reader.raw(length, "participants[\(index)]")
            guard let id = String(validating: raw, as: UTF8.self) else {
                throw reader.malformed("field 'participants[\(index)]': not UTF-8")
            }
            participants.append(id)
        }
        self.participants = participants
        try reader.finish()
        try validate()
    }
}

/// ceil(log2 n) for n >= 1.
func ceilLog2(_ n: Int) -> Int {
    precondition(n >= 1, "ceilLog2 of a non-positive number")
    return n == 1 ? 0 : Int.bitWidth - (n - 1).leadingZeroBitCount
}

/// The SecAgg+ neighbourhood graph: a k-regular Harary graph over a random permutation of the participants.
///
/// Participants are placed on a ring in the order of a permutation drawn from `seed` (Fisher-Yates driven by
/// `SplitMix64` with Lemire's unbiased bounded draw, written out here so every build derives the same graph);
/// each is joined to the k/2 nearest on either side. With k = n - 1 the graph is complete.
///
/// Invariants: symmetric, no self-loops, every participant has exactly k neighbours, `neighbours(of:)` is sorted
/// ascending, and the share a neighbour holds of `owner`'s secrets is numbered `1 + its position` in
/// `neighbours(of: owner)` (so share numbers fit in 1...255).
public struct NeighbourGraph: Sendable, Hashable {
    public let participantCount: Int
    public let neighbourCount: Int
    private let adjacency: [[Int]]

    /// Requires 1 <= k <= n - 1 and (k even or k == n - 1) (checked by `SecureAggregationParameters.validate`).
    public init(participantCount n: Int, neighbourCount k: Int, seed: UInt64) {
        precondition(n >= 2 && k >= 1 && k <= n - 1 && (k == n - 1 || k % 2 == 0), "invalid graph shape")
        participantCount = n
        neighbourCount = k
        if k == n - 1 {
            adjacency = (0..<n).map { i in (0..<n).filter { $0 != i } }
            return
        }
        var ring = Array(0..<n)
        var rng = SplitMix64(seed: seed)
        for i in stride(from: n - 1, to: 0, by: -1) {
            ring.swapAt(i, Self.bounded(&rng, below: UInt64(i + 1)))
        }
        var adjacency = [[Int]](repeating: [], count: n)
        for position in 0..<n {
            var list: [Int] = []
            list.reserveCapacity(k)
            for distance in 1...(k / 2) {
                list.append(ring[(position + distance) % n])
                list.append(ring[(position - distance + n) % n])
            }
            adjacency[ring[position]] = list.sorted()
        }
        self.adjacency = adjacency
    }

    /// Uniform in 0..<bound (Lemire 2019, multiply-shift with rejection).
    private static func bounded(_ rng: inout SplitMix64, below bound: UInt64) -> Int {
        var product = rng.next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let floor = (0 &- bound) % bound
            while product.low < floor { product = rng.next().multipliedFullWidth(by: bound) }
        }
        return Int(product.high)
    }

    /// The neighbours of `index`, ascending.
    public func neighbours(of index: Int) -> [Int] { adjacency[index] }

    public func areNeighbours(_ a: Int, _ b: Int) -> Bool { position(of: b, in: a) != nil }

    /// The number of the share `holder` holds of `owner`'s secrets, or nil when they are not neighbours.
    public func shareNumber(holder: Int, owner: Int) -> UInt8? {
        position(of: holder, in: owner).map { UInt8($0 + 1) }
    }

    private func position(of member: Int, in owner: Int) -> Int? {
        guard adjacency.indices.contains(owner) else { return nil }
        let list = adjacency[owner]
        var (low, high) = (0, list.count)
        while low < high {
            let middle = (low + high) / 2
            if list[middle] < member { low = middle + 1 } else { high = middle }
        }
        return low < list.count && list[low] == member ? low : nil
    }
}
