import FedRecModel
import FedRecRecall
import FedRecTensor
import Foundation
import PropertyBased
import Testing

/// The reference order: higher score first, ties to the lower index.
private func sortedPrefix(_ scores: [Float], k: Int) -> [Int] {
    Array(scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(k))
}

@Suite struct ExactIndexTests {
    /// Small-integer vectors make every dot product exact (so ties are real ties whatever the BLAS kernel);
    /// sizes cross the item blocks of both the single-query and the batched path.
    @Test func equalsFullSortPrefixWithTies() async {
        await propertyCheck(
            count: 40, input: Gen.int(in: 1...2600), Gen.int(in: 1...140), Gen.int(in: 1...5), Gen.int(in: 0...10_000)
        ) { n, k, queries, seed in
            var rng = SplitMix64(seed: UInt64(seed))
            let d = 4
            let items = Matrix(rows: n, columns: d, storage: (0..<(n * d)).map { _ in Float(Int(rng.next() % 5) - 2) })
            let query = Matrix(rows: queries, columns: d, storage: (0..<(queries * d)).map { _ in Float(Int(rng.next() % 5) - 2) })
            let index = ExactIndex(items: items)
            let results = index.search(query, k: k)
            for q in 0..<queries {
                let scores = index.scores(query: Array(query.storage[(q * d)..<((q + 1) * d)]))
                let expected = sortedPrefix(scores, k: k)
                let found = results.row(q)
                #expect(found.map { Int($0.item) } == expected)
                #expect(found.map(\.score) == expected.map { scores[$0] })
            }
        }
    }

    @Test func batchAndSingleAgreeAndPad() {
        let items = Fixture.gaussianUnitRows(3000, 16, seed: 3)
        let queries = Fixture.gaussianUnitRows(7, 16, seed: 4)
        let index = ExactIndex(items: items)
        let batch = index.search(queries, k: 50)
        for q in 0..<7 {
            let single = index.search(Matrix(rows: 1, columns: 16, storage: Array(queries.storage[(q * 16)..<((q + 1) * 16)])), k: 50)
            #expect(single.row(0).map(\.item) == batch.row(q).map(\.item))
        }
        let small = ExactIndex(items: Matrix(rows: 3, columns: 16, storage: Array(items.storage.prefix(48))))
        let padded = small.search(queries, k: 5)
        #expect(padded.row(0).count == 3)
        #expect(padded.items[3] == -1 && padded.scores[4] == -.infinity)
    }
}

/// HNSW recall against exact search (the acceptance checks); file and property tests are in
/// HNSWIndexTests.swift. The graph code is C compiled with -O3 in every configuration, so the 100k build costs
/// about 10 s even in a debug build.
@Suite(.serialized) struct HNSWRecallTests {
    static func recall(_ found: SearchResults, _ truth: SearchResults) -> Double {
        var hits = 0, total = 0
        for q in 0..<truth.queryCount {
            let expected = Set(truth.row(q).map(\.item))
            hits += found.row(q).filter { expected.contains($0.item) }.count
            total += expected.count
        }
        return Double(hits) / Double(total)
    }

    @Test func recallAt100OnHundredThousandRandomVectors() throws {
        let items = Fixture.gaussianUnitRows(100_000, 64, seed: 0)
        let queries = Fixture.gaussianUnitRows(20, 64, seed: 1)
        let truth = ExactIndex(items: items).search(queries, k: 100)
        let index = try HNSWIndex.build(items: items, parameters: HNSWParameters(m: 32, efConstruction: 40))
        let found = try index.withSearchBreadth(1024).search(queries, k: 100)
        let value = Self.recall(found, truth)
        #expect(value >= 0.95, "recall@100 \(value)")
        // A breadth below k still returns k items (the best of every item scored), with lower recall.
        let narrow = try index.withSearchBreadth(32).search(queries, k: 100)
        #expect((0..<20).allSatisfy { narrow.row($0).count == 100 })
        #expect(Self.recall(narrow, truth) < value)
    }

    @Test func recallOnAModelItemMatrixAndFileRoundTrip() throws {
        let file = Fixture.modelFile(items: 3000, dimension: 16)
        let items = file.itemEmbeddings
        let queries = Fixture.gaussianUnitRows(50, 16, seed: 9)
        let truth = ExactIndex(items: items).search(queries, k: 100)
        let index = try HNSWIndex.build(items: items, parameters: HNSWParameters(m: 16, efConstruction: 100), efSearch: 400)
        let found = try index.search(queries, k: 100)
        #expect(Self.recall(found, truth) >= 0.99)

        let path = Fixture.temporaryPath("index.hnsw")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fingerprint = MatrixFingerprint.of(items)
        try index.write(to: path, fingerprint: fingerprint)
        let loaded = try HNSWIndex.read(from: path, fingerprint: fingerprint, efSearch: 400)
        #expect(loaded.count == 3000 && loaded.dimension == 16)
        #expect(loaded.parameters == index.parameters)
        #expect(try loaded.search(queries, k: 100) == found)

        // Another item matrix: stale.
        var other = items
        other.storage[0] += 0.5
        #expect(MatrixFingerprint.of(other) != fingerprint)
        #expect { try HNSWIndex.read(from: path, fingerprint: MatrixFingerprint.of(other)) } throws: {
            ($0 as? RecallError)?.code == .staleIndex
        }
        // A truncated file: corrupt, and the message names the file.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes = bytes.prefix(bytes.count / 2)
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect { try HNSWIndex.read(from: path, fingerprint: fingerprint) } throws: {
            ($0 as? RecallError)?.code == .corruptIndex && ($0 as? RecallError)?.message.contains(path) == true
        }
    }
}
