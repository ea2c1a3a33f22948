import ArgumentParser
import FedRecData
import FedRecTensor
import Foundation

/// `fedrec bench import`: rows per second of importing a synthetic generic TSV.
struct BenchImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Data-import rows per second.",
        discussion: """
            Writes a seeded synthetic generic TSV (user, item, value, timestamp) to a temporary folder, then \
            times the import (parse + clean + features + split) and, separately, writing the data-set folder \
            and loading it back.
            """
    )

    @Option(parsing: .unconditional, help: "Interaction rows to generate.")
    var rows: Int = 1_000_000

    @Option(parsing: .unconditional, help: "Distinct users.")
    var users: Int = 50_000

    @Option(parsing: .unconditional, help: "Distinct items.")
    var items: Int = 20_000

    @Option(parsing: .unconditional, help: "Seed of the generator.")
    var seed: UInt64 = 42

    func validate() throws {
        guard rows >= 1 else { throw ValidationError("--rows must be at least 1, got \(rows)") }
        guard users >= 1 else { throw ValidationError("--users must be at least 1, got \(users)") }
        guard items >= 1 else { throw ValidationError("--items must be at least 1, got \(items)") }
    }

    /// The synthetic TSV: every user id `u<k>`, item id `i<k>`, value 0...5 (0 rows are filtered),
    /// timestamps in a ten-year window.
    func syntheticTSV() -> [UInt8] {
        var random = SplitMix64(seed: seed)
        var out = Array("user\titem\tvalue\ttimestamp\n".utf8)
        out.reserveCapacity(rows * 28)
        for _ in 0..<rows {
            out.append(0x75)
            out.append(contentsOf: String(random.next() % UInt64(users)).utf8)
            out.append(0x09)
            out.append(0x69)
            out.append(contentsOf: String(random.next() % UInt64(items)).utf8)
            out.append(0x09)
            out.append(contentsOf: String(random.next() % 6).utf8)
            out.append(0x09)
            out.append(contentsOf: String(1_300_000_000 + random.next() % 315_360_000).utf8)
            out.append(0x0A)
        }
        return out
    }

    func run() async throws {
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("fedrec-bench-import-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let input = folder + "/interactions.tsv"
        let bytes = syntheticTSV()
        try Data(bytes).write(to: URL(fileURLWithPath: input))
        print("input: \(rows) rows, \(users) users, \(items) items, \(bytes.count) bytes (seed \(seed))")

        let clock = ContinuousClock()
        var result: ImportResult?
        let importTime = try clock.measure {
            result = try DatasetImporter.importDataset(format: .generic, source: input)
        }
        let writeTime = try clock.measure {
            try result!.write(to: folder + "/dataset")
        }
        let loadTime = try clock.measure {
            _ = try Dataset.load(from: folder + "/dataset")
        }
        let c = result!.manifest.counts
        let importSeconds = importTime.seconds
        let writeSeconds = writeTime.seconds
        print("kept: \(c.interactionsKept) interactions, \(c.usersKept) users, \(c.catalogueItems) items")
        print(
            String(
                format: "import (parse + clean + features + split): %.3f s, %.0f rows/s", importSeconds,
                Double(rows) / importSeconds))
        print(String(format: "write data-set folder: %.3f s", writeSeconds))
        print(
            String(
                format: "total: %.3f s, %.0f rows/s", importSeconds + writeSeconds,
                Double(rows) / (importSeconds + writeSeconds)))
        print(String(format: "load data-set folder (verify + parse + split): %.3f s", loadTime.seconds))
    }
}
