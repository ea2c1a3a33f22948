import ArgumentParser
import FedRecRecall
import FedRecTensor
import Foundation

struct BenchIndexCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Queries/s of the exact and HNSW item indexes (single thread, recall@K of HNSW against exact).",
        discussion: """
            Catalogue vectors are drawn standard normal with seed 0, queries with seed 1, all L2-normalised. \
            Each (size, batch) runs whole batches of the same query set until --seconds have passed. \
            HNSW backends: 'hnsw' is fedrec's own index (the one `recall` serves with), 'faiss' is Debian's \
            libfaiss 1.7.3 IndexHNSWFlat, kept for comparison. Build times are single-threaded.
            """
    )

    @Option(help: "Catalogue sizes, comma-separated.")
    var sizes: String = "10000,100000,1000000"

    @Option(help: "Batch sizes, comma-separated.")
    var batches: String = "1,256"

    @Option(parsing: .unconditional, help: "Embedding width.")
    var dimension: Int = 64

    @Option(parsing: .unconditional, help: "Top-K.")
    var k: Int = 100

    @Option(parsing: .unconditional, help: "Distinct queries.")
    var queries: Int = 1024

    @Option(parsing: .unconditional, help: "Minimum seconds per measurement.")
    var seconds: Double = 2

    @Option(name: .customLong("hnsw-m"), parsing: .unconditional, help: "HNSW M.")
    var hnswM: Int = 32

    @Option(parsing: .unconditional, help: "HNSW efConstruction.")
    var efConstruction: Int = 40

    @Option(help: "HNSW search breadths, comma-separated.")
    var efSearch: String = "64,128"

    @Option(parsing: .unconditional, help: "Build HNSW only for catalogues up to this size (a 1M build takes minutes).")
    var hnswMaxSize: Int = 100_000

    @Option(help: "HNSW backends, comma-separated: hnsw (fedrec's), faiss (libfaiss 1.7.3, for comparison).")
    var backends: String = "hnsw,faiss"

    func validate() throws {
        guard dimension > 0, k > 0, queries > 0, seconds > 0, hnswM >= 2, efConstruction >= 1 else {
            throw ValidationError(
                "--dimension, --k, --queries, --seconds, --hnsw-m and --ef-construction must be positive")
        }
        for list in [sizes, batches, efSearch] where list.split(separator: ",").contains(where: { (Int($0) ?? 0) <= 0 })
        {
            throw ValidationError("'\(list)' must be a comma-separated list of positive integers")
        }
        let names = backends.split(separator: ",").map(String.init)
        guard !names.isEmpty, names.allSatisfy({ ["hnsw", "faiss"].contains($0) }) else {
            throw ValidationError("--backends must list 'hnsw' and/or 'faiss', got '\(backends)'")
        }
    }

    static func normalisedGaussian(rows: Int, columns: Int, seed: UInt64) -> Matrix {
        var rng = SplitMix64(seed: seed)
        var storage = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            var norm: Float = 0
            for c in 0..<columns {
                let value = rng.nextGaussian()
                storage[r * columns + c] = value
                norm += value * value
            }
            let scale = 1 / norm.squareRoot()
            for c in 0..<columns { storage[r * columns + c] *= scale }
        }
        return Matrix(rows: rows, columns: columns, storage: storage)
    }

    /// Queries/s of `search` over whole batches of `batch` queries, cycling through `all`.
    static func measure(all: Matrix, batch: Int, seconds: Double, search: (Matrix) throws -> Void) rethrows -> Double {
        let d = all.columns
        let batchCount = max(1, all.rows / batch)
        let batchesOfQueries = (0..<batchCount).map { b in
            Matrix(rows: batch, columns: d, storage: Array(all.storage[(b * batch * d)..<((b + 1) * batch * d)]))
        }
        try search(batchesOfQueries[0])  // warm-up
        let clock = ContinuousClock()
        let start = clock.now
        var done = 0
        var elapsed = 0.0
        repeat {
            try search(batchesOfQueries[done % batchCount])
            done += 1
            elapsed = (clock.now - start) / .seconds(1)
        } while elapsed < seconds
        return Double(done * batch) / elapsed
    }

    func run() async throws {
        BLAS.setThreadCount(1)
        HNSWIndex.setThreadCount(1)
        FaissHNSWIndex.setThreadCount(1)
        let sizeList = sizes.split(separator: ",").compactMap { Int($0) }
        let batchList = batches.split(separator: ",").compactMap { Int($0) }
        let breadths = efSearch.split(separator: ",").compactMap { Int($0) }
        let queryMatrix = Self.normalisedGaussian(rows: queries, columns: dimension, seed: 1)
        print(
            "bench index: d=\(dimension), K=\(k), 1 thread, \(queries) queries (seed 1), catalogue seed 0, "
                + "hnsw kernels \(HNSWIndex.kernel)")
        for size in sizeList {
            let items = Self.normalisedGaussian(rows: size, columns: dimension, seed: 0)
            let exact = ExactIndex(items: items)
            var workspace = ExactIndex.Workspace()
            for batch in batchList where batch <= queries {
                var results = SearchResults(queryCount: batch, k: k)
                let qps = Self.measure(all: queryMatrix, batch: batch, seconds: seconds) { q in
                    exact.search(q, k: k, workspace: &workspace, into: &results)
                }
                print(String(format: "%8d items  exact        batch %4d  %10.0f queries/s", size, batch, qps))
            }
            guard size <= hnswMaxSize else {
                print(String(format: "%8d items  hnsw skipped (--hnsw-max-size %d)", size, hnswMaxSize))
                continue
            }
            let truth = exact.search(queryMatrix, k: k)
            let parameters = HNSWParameters(m: hnswM, efConstruction: efConstruction)
            for backend in backends.split(separator: ",").map(String.init) {
                let clock = ContinuousClock()
                let start = clock.now
                // The index at a given breadth; both backends share their graph between breadths.
                let atBreadth: (Int) -> any ItemIndex
                if backend == "faiss" {
                    let faiss = try FaissHNSWIndex.build(items: items, parameters: parameters)
                    atBreadth = { faiss.withSearchBreadth($0) }
                } else {
                    let hnsw = try HNSWIndex.build(items: items, parameters: parameters)
                    atBreadth = { hnsw.withSearchBreadth($0) }
                }
                let buildSeconds = (clock.now - start) / .seconds(1)
                let label = backend == "faiss" ? "faiss" : "hnsw "
                print(
                    String(
                        format: "%8d items  %@ build (M %d, efConstruction %d)  %.1f s", size, label, hnswM,
                        efConstruction, buildSeconds))
                for breadth in breadths {
                    let index = atBreadth(breadth)
                    let found = try index.search(queryMatrix, k: k)
                    var hits = 0
                    for q in 0..<queries {
                        let expected = Set(truth.row(q).map(\.item))
                        hits += found.row(q).filter { expected.contains($0.item) }.count
                    }
                    let recall = Double(hits) / Double(queries * min(k, size))
                    for batch in batchList where batch <= queries {
                        let qps = try Self.measure(all: queryMatrix, batch: batch, seconds: seconds) { q in
                            _ = try index.search(q, k: k)
                        }
                        print(
                            String(
                                format: "%8d items  %@ ef %4d  batch %4d  %10.0f queries/s  recall@%d %.3f", size,
                                label,
                                breadth, batch, qps, k, recall))
                    }
                }
            }
        }
    }
}
