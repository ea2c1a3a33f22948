internal import CFedRecFaiss
public import FedRecTensor
internal import Foundation

/// Build parameters of an HNSW index.
public struct HNSWParameters: Sendable, Equatable, Codable {
    /// Neighbours per node on the upper layers (2M on layer 0).
    public var m: Int = 32
    /// Search breadth while building.
    public var efConstruction: Int = 40

    public init(m: Int = 32, efConstruction: Int = 40) {
        self.m = m
        self.efConstruction = efConstruction
    }
}

/// Approximate top-K by inner product: faiss `IndexHNSWFlat` (METRIC_INNER_PRODUCT) on unit vectors, through the
/// C API of `CFedRecFaiss` (every faiss exception becomes a `RecallError`). Searches may run concurrently.
public final class HNSWIndex: ItemIndex, @unchecked Sendable {
    private let handle: OpaquePointer
    public let count: Int
    public let dimension: Int
    public let parameters: HNSWParameters
    /// Search breadth (efSearch; raised to k when smaller).
    public let efSearch: Int
    public var kind: String { "hnsw" }

    private init(handle: OpaquePointer, parameters: HNSWParameters, efSearch: Int) {
        self.handle = handle
        self.count = Int(fedrec_hnsw_count(handle))
        self.dimension = Int(fedrec_hnsw_dimension(handle))
        self.parameters = parameters
        self.efSearch = efSearch
        self.owner = nil
    }

    deinit { if owner == nil { fedrec_hnsw_free(handle) } }

    /// The same index with another search breadth (shares the graph).
    public func withSearchBreadth(_ efSearch: Int) -> HNSWIndex {
        precondition(efSearch >= 1, "efSearch must be positive")
        return HNSWIndex(sharing: self, efSearch: efSearch, recount: false)
    }

    /// The index that owns (and frees) the faiss handle, when this one shares it.
    private let owner: HNSWIndex?

    /// Sets the OpenMP thread count faiss uses (1 for single-thread figures).
    public static func setThreadCount(_ threads: Int) {
        fedrec_faiss_set_threads(Int32(max(1, threads)))
    }

    /// Builds the graph over the rows of `items`.
    public static func build(items: Matrix, parameters: HNSWParameters = HNSWParameters(), efSearch: Int = 128) throws(RecallError) -> HNSWIndex {
        precondition(parameters.m >= 2 && parameters.efConstruction >= 1 && efSearch >= 1, "invalid HNSW parameters")
        var handle: OpaquePointer?
        let status = try call { error, capacity in
            items.storage.withUnsafeBufferPointer { vectors in
                fedrec_hnsw_build(
                    vectors.baseAddress, Int64(items.rows), Int32(items.columns), Int32(parameters.m),
                    Int32(parameters.efConstruction), &handle, error, capacity)
            }
        }
        _ = status
        return HNSWIndex(handle: handle!, parameters: parameters, efSearch: efSearch)
    }

    /// Appends rows (their item indices continue from `count`); returns the grown index.
    public func adding(_ rows: Matrix) throws(RecallError) -> HNSWIndex {
        precondition(rows.columns == dimension, "rows must have \(dimension) columns")
        _ = try Self.call { error, capacity in
            rows.storage.withUnsafeBufferPointer { vectors in
                fedrec_hnsw_add(handle, vectors.baseAddress, Int64(rows.rows), error, capacity)
            }
        }
        return HNSWIndex(sharing: self, efSearch: efSearch, recount: true)
    }

    private init(sharing other: HNSWIndex, efSearch: Int, recount: Bool) {
        self.handle = other.handle
        self.count = Int(fedrec_hnsw_count(other.handle))
        self.dimension = other.dimension
        self.parameters = other.parameters
        self.efSearch = efSearch
        self.owner = other.owner ?? other
    }

    public func search(_ queries: Matrix, k: Int) throws(RecallError) -> SearchResults {
        precondition(k > 0, "top-K needs k > 0, got \(k)")
        precondition(queries.columns == dimension, "queries have \(queries.columns) columns, the index \(dimension)")
        var labels = [Int64](repeating: -1, count: queries.rows * k)
        var scores = [Float](repeating: -.infinity, count: queries.rows * k)
        _ = try Self.call { error, capacity in
            queries.storage.withUnsafeBufferPointer { q in
                labels.withUnsafeMutableBufferPointer { l in
                    scores.withUnsafeMutableBufferPointer { s in
                        fedrec_hnsw_search(
                            handle, q.baseAddress, Int64(queries.rows), Int32(k), Int32(efSearch), l.baseAddress,
                            s.baseAddress, error, capacity)
                    }
                }
            }
        }
        var items = [Int32](repeating: -1, count: labels.count)
        for i in labels.indices where labels[i] >= 0 { items[i] = Int32(labels[i]) }
        for i in labels.indices where labels[i] < 0 { scores[i] = -.infinity }
        return SearchResults(queryCount: queries.rows, k: k, items: items, scores: scores)
    }

    // MARK: Files

    /// File layout: 8 bytes `FRHNSW01`, UInt64 little-endian header length, a JSON `IndexFileHeader`, then
    /// faiss's serialised index.
    static let magic = Array("FRHNSW01".utf8)

    /// Writes the index with `fingerprint` (of the item matrix it was built from), atomically.
    public func write(to path: String, fingerprint: String) throws(RecallError) {
        var buffer: UnsafeMutablePointer<UInt8>?
        var length = 0
        _ = try Self.call { error, capacity in fedrec_hnsw_serialize(handle, &buffer, &length, error, capacity) }
        defer { fedrec_faiss_free_buffer(buffer) }
        let header = IndexFileHeader(fingerprint: fingerprint, count: count, dimension: dimension, parameters: parameters)
        let json = (try? JSONEncoder().encode(header)) ?? Data()
        var bytes = Data(Self.magic)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(json)
        if let buffer { bytes.append(UnsafeBufferPointer(start: buffer, count: length)) }
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            try bytes.write(to: temporary)
        } catch {
            throw RecallError(code: .io, message: "\(path): cannot write the index: \(error.localizedDescription)")
        }
        if rename(temporary.path, path) != 0 {
            try? FileManager.default.removeItem(at: temporary)
            throw RecallError(code: .io, message: "\(path): cannot move the index into place (errno \(errno))")
        }
    }

    /// Reads an index file; throws `.staleIndex` when it was built from another item matrix than
    /// `fingerprint`, `.corruptIndex` when it cannot be parsed.
    public static func read(from path: String, fingerprint: String, efSearch: Int = 128) throws(RecallError) -> HNSWIndex {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw RecallError(code: .io, message: "\(path): cannot read the index: \(error.localizedDescription)")
        }
        let bytes = [UInt8](data)
        func corrupt(_ what: String) -> RecallError {
            RecallError(code: .corruptIndex, message: "\(path): not a fedrec HNSW index (\(what)); delete it or rebuild it")
        }
        guard bytes.count >= 16, Array(bytes[0..<8]) == magic else { throw corrupt("bad magic") }
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(bytes[8 + i]) << (8 * i) }
        guard headerLength >= 0, headerLength <= bytes.count - 16 else { throw corrupt("bad header length") }
        guard let header = try? JSONDecoder().decode(IndexFileHeader.self, from: Data(bytes[16..<(16 + headerLength)])) else {
            throw corrupt("bad header")
        }
        guard header.fingerprint == fingerprint else {
            throw RecallError(
                code: .staleIndex,
                message: "\(path): the index was built from another item matrix (fingerprint \(header.fingerprint.prefix(12)), "
                    + "the model's is \(fingerprint.prefix(12))): it is stale")
        }
        var handle: OpaquePointer?
        do {
            _ = try call { error, capacity in
                bytes.withUnsafeBufferPointer { buffer in
                    fedrec_hnsw_deserialize(
                        buffer.baseAddress! + 16 + headerLength, buffer.count - 16 - headerLength, &handle, error, capacity)
                }
            }
        } catch {
            throw corrupt(error.message)
        }
        let index = HNSWIndex(handle: handle!, parameters: header.parameters, efSearch: efSearch)
        guard index.count == header.count, index.dimension == header.dimension else { throw corrupt("size mismatch") }
        return index
    }

    /// Calls a C function with an error buffer; throws its message on a non-zero code.
    @discardableResult
    private static func call(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws(RecallError) -> Int32 {
        var error = [CChar](repeating: 0, count: 512)
        let status = error.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        guard status == 0 else {
            let message = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw RecallError(code: .index, message: "HNSW index: \(message) (code \(status))")
        }
        return status
    }
}

/// The JSON header of an HNSW index file.
struct IndexFileHeader: Codable {
    var fingerprint: String
    var count: Int
    var dimension: Int
    var parameters: HNSWParameters
}

/// A fingerprint of an item matrix (FNV-1a 64 over its shape and the bit patterns of its values), stored in
/// index files so a stale index is detected.
public enum MatrixFingerprint {
    public static func of(_ matrix: Matrix) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ word: UInt64) {
            hash ^= word
            hash = hash &* 0x0000_0100_0000_01B3
        }
        mix(UInt64(matrix.rows))
        mix(UInt64(matrix.columns))
        matrix.storage.withUnsafeBufferPointer { values in
            for value in values { mix(UInt64(value.bitPattern)) }
        }
        return String(hash, radix: 16)
    }
}
