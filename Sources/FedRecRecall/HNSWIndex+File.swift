internal import FedRecTensor

/// The HNSW index file, saved beside the model (`<model>.hnsw` by default): a safetensors file
/// (`SafeTensors+File.swift`) with
///
/// | tensor        | dtype | shape                | meaning                                                       |
/// |---------------|-------|----------------------|---------------------------------------------------------------|
/// | `vectors`     | F32   | `[count, dimension]` | the item rows the graph was built from                        |
/// | `levels`      | I32   | `[count]`            | each node's top level (0...24)                                |
/// | `links0`      | I32   | `[count, 2M]`        | level-0 neighbour ids, then -1 padding                        |
/// | `links_upper` | I32   | `[lists, M]`         | upper-level lists, node by node in id order, levels 1...level |
///
/// and string metadata `format` = `fedrec-hnsw`, `version` = `1`, `m`, `ef_construction`, `seed`,
/// `entry_point`, `fingerprint` (of the model's item matrix, for staleness) and `checksum` (FNV-1a 64, hex, over
/// the four tensors in table order and the other metadata: see `HNSWIndex.checksum`).
///
/// Reading validates, in order: the safetensors structure (a truncated file fails here), the metadata, tensor
/// shapes and dtypes, the checksum, then the graph itself (every id in range, links only to nodes of that level,
/// the entry point on the top level) so a damaged file can never make a search read out of bounds. Every failure
/// is a `RecallError` naming the file: `.io` when it cannot be read, `.corruptIndex` when it is damaged,
/// `.staleIndex` when it is intact but was built from another item matrix.
extension HNSWIndex {
    static let fileFormat = "fedrec-hnsw"
    static let fileVersion = "1"

    /// The metadata the checksum covers, in order (everything but `format`, `version` and `checksum` itself).
    static let checkedKeys = ["m", "ef_construction", "seed", "entry_point", "fingerprint"]

    /// FNV-1a 64 (hex) over 64-bit words: the exported arrays (vectors, levels, level-0 links, upper links; each
    /// F32 or I32 bit pattern zero-extended), then the UTF-8 bytes of `key=value` for each of `checkedKeys`.
    static func checksum(_ arrays: HNSWGraph.Arrays, metadata: [String: String]) -> String {
        var hash = HNSWGraph.fingerprint(arrays.vectors, from: MatrixFingerprint.basis)
        hash = HNSWGraph.fingerprint(arrays.levels, from: hash)
        hash = HNSWGraph.fingerprint(arrays.links0, from: hash)
        hash = HNSWGraph.fingerprint(arrays.upper, from: hash)
        for key in checkedKeys {
            for byte in "\(key)=\(metadata[key] ?? "")".utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01B3
            }
        }
        return String(hash, radix: 16)
    }

    /// Writes the index with `fingerprint` (of the item matrix it was built from), atomically (temporary file,
    /// then rename).
    public func write(to path: String, fingerprint: String) throws(RecallError) {
        let arrays = graph.export()
        let m = parameters.m
        var metadata = [
            "format": Self.fileFormat, "version": Self.fileVersion, "m": String(m),
            "ef_construction": String(parameters.efConstruction), "seed": String(parameters.seed),
            "entry_point": String(arrays.entryPoint), "fingerprint": fingerprint,
        ]
        metadata["checksum"] = Self.checksum(arrays, metadata: metadata)
        let tensors = SafeTensors(
            tensors: [
                SafeTensor(name: "vectors", shape: [count, dimension], values: arrays.vectors),
                SafeTensor(name: "levels", shape: [count], integers: arrays.levels),
                SafeTensor(name: "links0", shape: [count, 2 * m], integers: arrays.links0),
                SafeTensor(name: "links_upper", shape: [arrays.upperListCount, m], integers: arrays.upper),
            ],
            metadata: metadata)
        do {
            try tensors.write(to: path)
        } catch {
            throw RecallError(code: .io, message: "\(path): cannot write the index: \(error.message)")
        }
    }

    /// Whether `path` holds a safetensors file that says it is a fedrec HNSW index (whatever its version or
    /// state): such a file may be rebuilt in place; any other file is not the index's to overwrite.
    public static func isIndexFile(at path: String) -> Bool {
        (try? SafeTensors.read(from: path))?.metadata["format"] == fileFormat
    }

    /// Reads an index file (see the format above) with search breadth `efSearch`.
    public static func read(from path: String, fingerprint: String, efSearch: Int = 128) throws(RecallError) -> HNSWIndex {
        precondition(efSearch >= 1, "efSearch must be positive")
        func corrupt(_ what: String) -> RecallError {
            RecallError(code: .corruptIndex, message: "\(path): not a valid fedrec HNSW index (\(what)); delete it or rebuild it")
        }
        let file: SafeTensors
        do {
            file = try SafeTensors.read(from: path)
        } catch {
            if error.code == .io { throw RecallError(code: .io, message: "\(path): cannot read the index: \(error.message)") }
            throw corrupt(error.message)
        }
        let metadata = file.metadata
        guard metadata["format"] == fileFormat else { throw corrupt("format is not '\(fileFormat)'") }
        guard metadata["version"] == fileVersion else {
            throw corrupt("version \(metadata["version"] ?? "none"), this build reads \(fileVersion)")
        }
        func integer(_ key: String) throws(RecallError) -> Int {
            guard let text = metadata[key], let value = Int(text) else { throw corrupt("metadata '\(key)' missing or not an integer") }
            return value
        }
        let m = try integer("m"), efConstruction = try integer("ef_construction"), entryPoint = try integer("entry_point")
        guard let seedText = metadata["seed"], let seed = UInt64(seedText) else { throw corrupt("metadata 'seed' missing or invalid") }
        guard let storedFingerprint = metadata["fingerprint"], let storedChecksum = metadata["checksum"] else {
            throw corrupt("metadata 'fingerprint' or 'checksum' missing")
        }
        guard (2...HNSWParameters.maximumM).contains(m), (1...HNSWParameters.maximumBreadth).contains(efConstruction) else {
            throw corrupt("M \(m), efConstruction \(efConstruction)")
        }
        guard entryPoint >= -1, entryPoint < Int(Int32.max) else { throw corrupt("entry point \(entryPoint)") }
        guard let vectorTensor = file["vectors"], vectorTensor.shape.count == 2 else { throw corrupt("no 2-D tensor 'vectors'") }
        let count = vectorTensor.shape[0], dimension = vectorTensor.shape[1]
        guard dimension >= 1 else { throw corrupt("dimension \(dimension)") }
        let vectors: SafeTensor, levels: SafeTensor, links0: SafeTensor, upper: SafeTensor
        do throws(TensorFileError) {
            vectors = try file.tensor("vectors", shape: [count, dimension], dtype: .f32, file: path)
            levels = try file.tensor("levels", shape: [count], dtype: .i32, file: path)
            links0 = try file.tensor("links0", shape: [count, 2 * m], dtype: .i32, file: path)
            guard let upperTensor = file["links_upper"], upperTensor.shape.count == 2 else {
                throw TensorFileError(code: .missingTensor, file: path, message: "no 2-D tensor 'links_upper'")
            }
            upper = try file.tensor("links_upper", shape: [upperTensor.shape[0], m], dtype: .i32, file: path)
        } catch {
            throw corrupt(error.message)
        }
        let arrays = HNSWGraph.Arrays(
            vectors: vectors.values, levels: levels.integers, links0: links0.integers, upper: upper.integers,
            upperListCount: upper.shape[0], entryPoint: Int32(entryPoint))
        guard checksum(arrays, metadata: metadata) == storedChecksum else { throw corrupt("checksum mismatch: the file is damaged") }
        // The stored vectors themselves must be the model's item matrix: the metadata's fingerprint alone could
        // claim so for a graph over other vectors (another count or dimension would send searches out of bounds).
        let storedMatrix = Matrix(rows: count, columns: dimension, storage: vectors.values)
        guard storedFingerprint == fingerprint, MatrixFingerprint.of(storedMatrix) == fingerprint else {
            throw RecallError(
                code: .staleIndex,
                message: "\(path): the index was built from another item matrix (fingerprint \(storedFingerprint.prefix(12)), "
                    + "the model's is \(fingerprint.prefix(12))): it is stale")
        }
        let graph = try HNSWGraph.load(
            arrays, dimension: dimension, m: m, efConstruction: efConstruction, seed: seed, file: path)
        return HNSWIndex(
            graph: graph, parameters: HNSWParameters(m: m, efConstruction: efConstruction, seed: seed), efSearch: efSearch)
    }
}
