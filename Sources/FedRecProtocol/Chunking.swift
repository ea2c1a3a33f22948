/// How a large payload travels: `PayloadInfo` (total length, chunk count) first, then `chunkCount` chunks in
/// index order, each at most `chunkSize` bytes, all but the last exactly `chunkSize`.
///
/// Every chunked payload is a sealed `Envelope`, so integrity and authenticity come from its AEAD tag, checked
/// when the reassembled bytes are opened; chunking only bounds memory and enforces order and sizes.
public struct ChunkPlan: Sendable, Hashable {
    /// Default chunk size: 1 MiB, well below gRPC's default 4 MiB message limit.
    public static let defaultChunkSize = 1 << 20

    public var totalLength: Int
    public var chunkCount: Int

    public init(totalLength: Int, chunkCount: Int) {
        self.totalLength = totalLength
        self.chunkCount = chunkCount
    }
}

/// Splits payloads into chunks and checks reassembly.
public enum Chunker {
    /// The plan and chunks of `payload`. An empty payload is one empty chunk.
    public static func split(_ payload: [UInt8], chunkSize: Int = ChunkPlan.defaultChunkSize)
        -> (plan: ChunkPlan, chunks: [ArraySlice<UInt8>])
    {
        precondition(chunkSize > 0, "chunk size must be positive")
        var chunks: [ArraySlice<UInt8>] = []
        var start = 0
        repeat {
            let end = min(start + chunkSize, payload.count)
            chunks.append(payload[start..<end])
            start = end
        } while start < payload.count
        return (ChunkPlan(totalLength: payload.count, chunkCount: chunks.count), chunks)
    }
}

/// Reassembles one payload from its chunks, refusing anything out of order, oversized or not matching the
/// announced length (the payload's own AEAD tag then authenticates its content). Memory is bounded by `maximumLength`, checked before any chunk is stored.
public struct ChunkAssembler: Sendable {
    public let plan: ChunkPlan
    public let chunkSize: Int
    /// Whether chunks are stored (false: a payload already refused is read through, its framing checked, and
    /// dropped).
    public let keepsBytes: Bool
    private var buffer: [UInt8] = []
    private var nextIndex = 0
    private var received = 0

    /// Throws `oversized` when the announced length exceeds `maximumLength`, `malformedChunk` when the
    /// announced chunk count cannot carry it at `chunkSize`.
    public init(
        plan: ChunkPlan, chunkSize: Int = ChunkPlan.defaultChunkSize, maximumLength: Int, keepsBytes: Bool = true
    ) throws {
        guard plan.totalLength >= 0, plan.totalLength <= maximumLength else {
            throw ProtocolError(
                code: .oversized, message: "payload of \(plan.totalLength) bytes exceeds the limit of \(maximumLength)")
        }
        let expectedChunks = max(1, (plan.totalLength + chunkSize - 1) / chunkSize)
        guard plan.chunkCount == expectedChunks else {
            throw ProtocolError(
                code: .malformedChunk,
                message:
                    "\(plan.chunkCount) chunk(s) announced for \(plan.totalLength) bytes, expected \(expectedChunks)")
        }
        self.plan = plan
        self.chunkSize = chunkSize
        self.keepsBytes = keepsBytes
        // Reserved up front only to `upfrontReserve`: beyond it the buffer grows as bytes arrive, so an announced
        // length (which the limit, when it comes from unauthenticated shapes, may let be huge) allocates nothing
        // the sender did not send.
        if keepsBytes { buffer.reserveCapacity(min(plan.totalLength, Self.upfrontReserve)) }
    }

    /// The most capacity reserved before any chunk arrives (larger than any model payload fedrec sends today).
    public static let upfrontReserve = 64 << 20

    public var isComplete: Bool { nextIndex == plan.chunkCount }
    public var receivedBytes: Int { received }

    /// Appends chunk `index`; it must be the next one and have the expected size.
    public mutating func append<Bytes: Collection>(index: Int, _ data: Bytes) throws where Bytes.Element == UInt8 {
        guard nextIndex < plan.chunkCount else {
            throw ProtocolError(code: .malformedChunk, message: "chunk \(index) after the last of \(plan.chunkCount)")
        }
        guard index == nextIndex else {
            throw ProtocolError(code: .malformedChunk, message: "chunk \(index) received, expected chunk \(nextIndex)")
        }
        let expected = index == plan.chunkCount - 1 ? plan.totalLength - index * chunkSize : chunkSize
        guard data.count == expected else {
            throw ProtocolError(
                code: data.count > expected ? .oversized : .malformedChunk,
                message: "chunk \(index) has \(data.count) bytes, expected \(expected)")
        }
        if keepsBytes { buffer.append(contentsOf: data) }
        received += data.count
        nextIndex += 1
    }

    /// The payload (empty when `keepsBytes` is false), after checking that every chunk arrived.
    public func finish() throws -> [UInt8] {
        guard isComplete else {
            throw ProtocolError(
                code: .malformedChunk, message: "stream ended after \(nextIndex) of \(plan.chunkCount) chunk(s)")
        }
        return buffer
    }
}
