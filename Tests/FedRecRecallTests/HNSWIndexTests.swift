import FedRecRecall
import FedRecTensor
import Foundation
import PropertyBased
import Synchronization
import Testing

/// The hand-written HNSW index: result invariants on random graphs, determinism, copies, concurrency, and the
/// index file (round trip, staleness, every kind of damage throwing a `RecallError` that names the file).
@Suite struct HNSWIndexTests {
    private static func row(_ m: Matrix, _ r: Int) -> [Float] {
        Array(m.storage[(r * m.columns)..<((r + 1) * m.columns)])
    }

    private static func dot(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
    }

    /// Whatever the size, M, efConstruction, breadth and k: each row holds distinct valid items, best first, with
    /// their true inner products, then only padding; at least one and never more than min(k, count) items.
    @Test func resultRowsAreValidAndSorted() async throws {
        await propertyCheck(
            count: 40, input: Gen.int(in: 1...400), Gen.int(in: 2...12), Gen.int(in: 1...64), Gen.int(in: 0...10_000)
        ) { n, m, k, seed in
            let d = 8
            let items = Fixture.gaussianUnitRows(n, d, seed: UInt64(seed))
            let queries = Fixture.gaussianUnitRows(5, d, seed: UInt64(seed) + 1)
            let breadth = 1 + seed % 80
            let index = try! HNSWIndex.build(
                items: items, parameters: HNSWParameters(m: m, efConstruction: 1 + seed % 50, seed: UInt64(seed)),
                efSearch: breadth)
            let results = try! index.search(queries, k: k)
            for q in 0..<5 {
                let found = results.row(q)
                #expect(found.count <= min(k, n) && found.count >= 1)
                #expect(Set(found.map(\.item)).count == found.count)
                #expect(zip(found, found.dropFirst()).allSatisfy { $0.score >= $1.score })
                for (item, score) in found {
                    #expect(item >= 0 && Int(item) < n)
                    let exact = Self.dot(Self.row(queries, q), Self.row(items, Int(item)))
                    #expect(abs(exact - score) <= 1e-5)
                }
                for slot in (q * k + found.count)..<(q * k + k) {
                    #expect(results.items[slot] == -1 && results.scores[slot] == -.infinity)
                }
            }
        }
    }

    @Test func sameSeedSameGraphAndAddingCopies() throws {
        let items = Fixture.gaussianUnitRows(2000, 16, seed: 21)
        let extra = Fixture.gaussianUnitRows(300, 16, seed: 22)
        let queries = Fixture.gaussianUnitRows(30, 16, seed: 23)
        let parameters = HNSWParameters(m: 8, efConstruction: 60, seed: 5)
        let a = try HNSWIndex.build(items: items, parameters: parameters, efSearch: 64)
        let b = try HNSWIndex.build(items: items, parameters: parameters, efSearch: 64)
        #expect(try a.search(queries, k: 20) == b.search(queries, k: 20))

        let grown = try a.adding(extra)
        #expect(grown.count == 2300 && a.count == 2000)
        #expect(try a.search(queries, k: 20) == b.search(queries, k: 20))
        // Each added row finds itself first (unit rows: its own inner product, 1, is the largest possible).
        let own = try grown.withSearchBreadth(200).search(extra, k: 1)
        let selfHits = (0..<300).filter { own.items[$0] == Int32(2000 + $0) }.count
        #expect(selfHits >= 297, "\(selfHits) of 300 added rows found themselves")
        // Building from all rows at once gives the same graph as building then adding.
        var all = items
        all = Matrix(rows: 2300, columns: 16, storage: items.storage + extra.storage)
        let whole = try HNSWIndex.build(items: all, parameters: parameters, efSearch: 64)
        #expect(try whole.search(queries, k: 20) == grown.search(queries, k: 20))
    }

    @Test func threadedBatchSearchEqualsSingleThread() throws {
        let items = Fixture.gaussianUnitRows(3000, 16, seed: 31)
        let queries = Fixture.gaussianUnitRows(101, 16, seed: 32)
        let index = try HNSWIndex.build(items: items, parameters: HNSWParameters(m: 8, efConstruction: 40), efSearch: 50)
        let single = try index.search(queries, k: 10)
        HNSWIndex.setThreadCount(3)
        defer { HNSWIndex.setThreadCount(1) }
        #expect(try index.search(queries, k: 10) == single)
        let empty = try HNSWIndex.build(items: Matrix(rows: 0, columns: 16, storage: []))
        #expect(try empty.search(queries, k: 3).items.allSatisfy { $0 == -1 })
        #expect(try index.search(Matrix(rows: 0, columns: 16, storage: []), k: 3).queryCount == 0)
    }

    // MARK: Files

    private static func savedIndex() throws -> (index: HNSWIndex, path: String, fingerprint: String, queries: Matrix) {
        let items = Fixture.gaussianUnitRows(500, 8, seed: 41)
        let index = try HNSWIndex.build(items: items, parameters: HNSWParameters(m: 4, efConstruction: 30, seed: 9), efSearch: 40)
        let path = Fixture.temporaryPath("damaged.hnsw")
        let fingerprint = MatrixFingerprint.of(items)
        try index.write(to: path, fingerprint: fingerprint)
        return (index, path, fingerprint, Fixture.gaussianUnitRows(10, 8, seed: 42))
    }

    /// faiss reads the search breadth from the shared index: searches at two breadths running at once on views of
    /// one index each give exactly the results of that breadth searched alone.
    @Test func faissSearchesAtDifferentBreadthsRunTogether() throws {
        let items = Fixture.gaussianUnitRows(3_000, 16, seed: 5)
        let queries = Fixture.gaussianUnitRows(64, 16, seed: 6)
        FaissHNSWIndex.setThreadCount(1)
        let narrow = try FaissHNSWIndex.build(items: items, parameters: HNSWParameters(m: 4), efSearch: 10)
        let wide = narrow.withSearchBreadth(400)
        let expected = [try narrow.search(queries, k: 10), try wide.search(queries, k: 10)]
        #expect(expected[0].items != expected[1].items)  // the breadths give different answers
        let mismatches = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 64) { run in
            let view = run % 2 == 0 ? narrow : wide
            if (try? view.search(queries, k: 10).items) != expected[run % 2].items { mismatches.withLock { $0 += 1 } }
        }
        #expect(mismatches.withLock { $0 } == 0)
    }

    @Test func roundTripKeepsResultsAndParameters() throws {
        let (index, path, fingerprint, queries) = try Self.savedIndex()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let loaded = try HNSWIndex.read(from: path, fingerprint: fingerprint, efSearch: 40)
        #expect(loaded.parameters == HNSWParameters(m: 4, efConstruction: 30, seed: 9))
        #expect(loaded.efSearch == 40 && loaded.count == 500 && loaded.dimension == 8)
        #expect(try loaded.search(queries, k: 15) == index.search(queries, k: 15))
        // The file is a safetensors file with the documented tensors.
        let file = try SafeTensors.read(from: path)
        #expect(file.tensors.map(\.name) == ["vectors", "levels", "links0", "links_upper"])
        #expect(file.metadata["format"] == "fedrec-hnsw" && file.metadata["m"] == "4")
        // Appending to a loaded index continues its graph.
        let more = try loaded.adding(Fixture.gaussianUnitRows(5, 8, seed: 43))
        #expect(more.count == 505)
    }

    /// An index whose metadata claims the model's fingerprint but whose graph holds other vectors (another count
    /// or dimension would send searches out of bounds) is refused as stale.
    @Test func vectorsThatAreNotTheModelsAreRefused() throws {
        let model = Fixture.gaussianUnitRows(40, 8, seed: 51)
        let fingerprint = MatrixFingerprint.of(model)
        for other in [Fixture.gaussianUnitRows(41, 8, seed: 51), Fixture.gaussianUnitRows(40, 16, seed: 51)] {
            let path = Fixture.temporaryPath("foreign.hnsw")
            defer { try? FileManager.default.removeItem(atPath: path) }
            try HNSWIndex.build(items: other, parameters: HNSWParameters(m: 4, efConstruction: 20)).write(
                to: path, fingerprint: fingerprint)
            #expect { try HNSWIndex.read(from: path, fingerprint: fingerprint) } throws: {
                ($0 as? RecallError)?.code == .staleIndex
            }
        }
    }

    /// Any byte of the file with its top bit flipped makes reading throw `.corruptIndex` naming the file: the
    /// safetensors structure, metadata and checksum catch every change (a single changed word always changes an
    /// FNV-1a hash).
    @Test func everyDamagedByteIsReported() async throws {
        let (_, path, fingerprint, _) = try Self.savedIndex()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        await propertyCheck(count: 60, input: Gen.int(in: 0...(original.count - 1))) { position in
            var bytes = original
            bytes[position] ^= 0x80
            let damaged = Fixture.temporaryPath("flip-\(position).hnsw")
            defer { try? FileManager.default.removeItem(atPath: damaged) }
            try! bytes.write(to: URL(fileURLWithPath: damaged))
            #expect("byte \(position)") {
                try HNSWIndex.read(from: damaged, fingerprint: fingerprint)
            } throws: {
                guard let error = $0 as? RecallError else { return false }
                return error.code == .corruptIndex && error.message.contains(damaged)
            }
        }
    }

    @Test func truncatedMissingAndForeignFilesAreReported() throws {
        let (_, path, fingerprint, _) = try Self.savedIndex()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        for length in [0, 7, 8, 100, original.count - 4, original.count - 1] {
            try original.prefix(length).write(to: URL(fileURLWithPath: path))
            #expect("length \(length)") { try HNSWIndex.read(from: path, fingerprint: fingerprint) } throws: {
                ($0 as? RecallError)?.code == .corruptIndex && ($0 as? RecallError)?.message.contains(path) == true
            }
        }
        // A valid safetensors file that is not an index.
        try SafeTensors(tensors: [SafeTensor(name: "vectors", shape: [1, 2], values: [1, 2])]).write(to: path)
        #expect { try HNSWIndex.read(from: path, fingerprint: fingerprint) } throws: {
            ($0 as? RecallError)?.code == .corruptIndex
        }
        let missing = Fixture.temporaryPath("missing.hnsw")
        #expect { try HNSWIndex.read(from: missing, fingerprint: fingerprint) } throws: {
            ($0 as? RecallError)?.code == .io && ($0 as? RecallError)?.message.contains(missing) == true
        }
    }

    /// A file whose checksum was recomputed after its links were pointed out of range (a damaged or hostile
    /// file that passes the checksum) is still rejected by the graph validator, never searched.
    @Test func outOfRangeLinksAreRejectedEvenWithAValidChecksum() throws {
        let (_, path, fingerprint, _) = try Self.savedIndex()
        defer { try? FileManager.default.removeItem(atPath: path) }
        var file = try SafeTensors.read(from: path)
        let linkIndex = try #require(file.tensors.firstIndex { $0.name == "links0" })
        file.tensors[linkIndex].integers[0] = 10_000
        // Recompute the checksum the way the writer does, over the same tensors in order.
        file.metadata["checksum"] = HNSWFileChecksum.of(file)
        try file.write(to: path)
        #expect { try HNSWIndex.read(from: path, fingerprint: fingerprint) } throws: {
            guard let error = $0 as? RecallError else { return false }
            return error.code == .corruptIndex && error.message.contains("level-0") && error.message.contains(path)
        }
    }
}

/// The index file's checksum, recomputed independently of the library (FNV-1a 64 over 64-bit words: each F32
/// or I32 bit pattern zero-extended, tensors in file order, from the offset basis; then the UTF-8 bytes of
/// `key=value` for the checked metadata keys).
enum HNSWFileChecksum {
    static func of(_ file: SafeTensors) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ word: UInt64) {
            hash ^= word
            hash = hash &* 0x0000_0100_0000_01B3
        }
        for tensor in file.tensors {
            if tensor.dtype == .f32 {
                for value in tensor.values { mix(UInt64(value.bitPattern)) }
            } else {
                for value in tensor.integers { mix(UInt64(UInt32(bitPattern: value))) }
            }
        }
        for key in ["m", "ef_construction", "seed", "entry_point", "fingerprint"] {
            for byte in "\(key)=\(file.metadata[key] ?? "")".utf8 { mix(UInt64(byte)) }
        }
        return String(hash, radix: 16)
    }
}
