import FedRecData
import Foundation
import Testing

/// The split files must match the reference SHA-256s of `../shared/reference/splits/<dataset>/`.
@Suite struct ReferenceSplitTests {
    /// `stats.json` of a reference split.
    struct Stats: Decodable {
        var rawRows: Int
        var interactionsDedup: Int
        var usersKept: Int
        var usersDropped: Int
        var itemsCatalogue: Int
        var train: Int
        var test: Int
        var fit: Int
        var val: Int
        var itemsWithTrain: Int
        var hasTimestamps: Bool

        enum CodingKeys: String, CodingKey {
            case rawRows = "raw_rows"
            case interactionsDedup = "interactions_dedup"
            case usersKept = "users_kept"
            case usersDropped = "users_dropped"
            case itemsCatalogue = "items_catalogue"
            case train, test
            case fit = "fit(train-val)"
            case val
            case itemsWithTrain = "items_with_train"
            case hasTimestamps = "has_timestamps"
        }
    }

    func check(dataset: String, source: String, format: SourceFormat) throws {
        let reference = Fixtures.referenceSplit(dataset)
        let result = try DatasetImporter.importDataset(format: format, source: source)
        let files = SplitExport.files(for: result.content)
        let expected = try String(contentsOf: reference.appendingPathComponent("sha256.txt"), encoding: .utf8)
        var expectedByName: [String: String] = [:]
        for line in expected.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            expectedByName[String(parts[1])] = String(parts[0])
        }
        #expect(expectedByName.count == 3)
        for file in files {
            #expect(try Fixtures.sha256(file.bytes) == expectedByName[file.name], "\(dataset)/\(file.name)")
        }

        let stats = try JSONDecoder().decode(
            Stats.self, from: Data(contentsOf: reference.appendingPathComponent("stats.json")))
        let counts = result.manifest.counts
        let split = result.split.counts
        #expect(counts.rawRows == stats.rawRows)
        #expect(counts.rawRows - counts.duplicatesRemoved == stats.interactionsDedup)
        #expect(counts.usersKept == stats.usersKept)
        #expect(counts.usersDropped == stats.usersDropped)
        #expect(counts.catalogueItems == stats.itemsCatalogue)
        #expect(split.train == stats.train)
        #expect(split.test == stats.test)
        #expect(split.fit == stats.fit)
        #expect(split.validation == stats.val)
        #expect(split.itemsWithTrain == stats.itemsWithTrain)
        #expect(result.content.hasTimestamps == stats.hasTimestamps)
    }

    @Test(.enabled(if: Fixtures.hasReferenceSplits, "needs ../shared/reference/splits"))
    func mlLatestSmallMatchesReference() throws {
        try check(dataset: "ml-latest-small", source: Fixtures.mlLatestSmall, format: .mlLatestSmall)
    }

    // ml-100k may not be redistributed, so it is read from ../shared/data/ml-100k and the test is
    // skipped where that copy is absent.
    @Test(
        .enabled(
            if: Fixtures.hasML100k && Fixtures.hasReferenceSplits, "needs ../shared/data/ml-100k (not redistributable)")
    )
    func ml100kMatchesReference() throws {
        try check(dataset: "ml-100k", source: Fixtures.ml100k, format: .ml100k)
    }
}
