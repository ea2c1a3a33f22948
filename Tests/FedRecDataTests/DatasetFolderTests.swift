import CFedRecFiles
import FedRecData
import Foundation
import Testing

/// Writing and loading data-set folders: round trip, atomicity, corruption.
@Suite struct DatasetFolderTests {
    static let ratings =
        "userId,movieId,rating,timestamp\n"
        + (1...3).flatMap { user in (1...6).map { "\(user),\(($0 * user) % 9 + 1),\($0).5,\(1000 + $0)\n" } }.joined()
        + "4,1,5.0,1\n"
    static let movies =
        "movieId,title,genres\n1,\"Tab\tand \\\\ slash (1999)\",Drama\n2,B (1980),Comedy|Drama\n99,Z (2015),Drama\n"

    func source() throws -> String {
        try Fixtures.folder(["ratings.csv": Self.ratings, "movies.csv": Self.movies])
    }

    @Test func roundTripPreservesEverything() throws {
        let src = try source()
        let out = try Fixtures.temporaryFolder()
        defer {
            Fixtures.remove(src)
            Fixtures.remove(out)
        }
        let result = try DatasetImporter.importDataset(source: src)
        let written = try result.write(to: out + "/ds")
        let loaded = try Dataset.load(from: out + "/ds")
        #expect(loaded.content == result.content)
        #expect(loaded.manifest == written.manifest)
        #expect(loaded.checksum == written.checksum && loaded.checksum.count == 64)
        #expect(loaded.split == result.split)
        #expect(loaded.itemIndex(of: "2") == result.content.itemIDs.firstIndex(of: "2"))
        #expect(loaded.itemIndex(of: "99") == nil)
        #expect(loaded.contentOnlyItems.map(\.id) == ["99"])
        #expect(loaded.titles.contains("Tab\tand \\\\ slash (1999)"))
        #expect(try result.dataset().checksum == loaded.checksum)
        // Source digests recorded.
        #expect(loaded.manifest.sourceFiles.map(\.name) == ["ratings.csv", "movies.csv"])
        // The same input gives the same checksum.
        #expect(try DatasetImporter.importDataset(source: src).dataset().checksum == loaded.checksum)
        // No temporary folders left beside the output.
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["ds"])
    }

    @Test func refusesToOverwriteWithoutForce() throws {
        let src = try source()
        let out = try Fixtures.temporaryFolder()
        defer {
            Fixtures.remove(src)
            Fixtures.remove(out)
        }
        let result = try DatasetImporter.importDataset(source: src)
        try result.write(to: out + "/ds")
        let error = try #require(throws: DataError.self) { try result.write(to: out + "/ds") }
        #expect(error.code == .outputExists)
        try result.write(to: out + "/ds", force: true)
        #expect(try Dataset.load(from: out + "/ds").checksum == (try result.dataset().checksum))
        // An existing empty folder is fine.
        try FileManager.default.createDirectory(atPath: out + "/empty", withIntermediateDirectories: false)
        try result.write(to: out + "/empty")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == ["ds", "empty"])
    }

    @Test("two folders swap places in one step (what a forced write does where the kernel allows it)")
    func exchangeSwapsTwoFolders() throws {
        let out = try Fixtures.temporaryFolder()
        defer { Fixtures.remove(out) }
        let fm = FileManager.default
        for (folder, file) in [("new", "n"), ("old", "o")] {
            try fm.createDirectory(atPath: out + "/" + folder, withIntermediateDirectories: false)
            #expect(fm.createFile(atPath: out + "/\(folder)/\(file)", contents: Data()))
        }
        #expect(fedrec_exchange_paths(out + "/new", out + "/old") == 0, "errno \(errno)")
        #expect(try fm.contentsOfDirectory(atPath: out + "/old") == ["n"])
        #expect(try fm.contentsOfDirectory(atPath: out + "/new") == ["o"])
        // A missing side changes nothing.
        #expect(fedrec_exchange_paths(out + "/missing", out + "/old") == -1 && errno == ENOENT)
        #expect(try fm.contentsOfDirectory(atPath: out + "/old") == ["n"])
    }

    /// Writes a data set and returns (folder, data-set path).
    func written() throws -> (String, String) {
        let src = try source()
        defer { Fixtures.remove(src) }
        let out = try Fixtures.temporaryFolder()
        try DatasetImporter.importDataset(source: src).write(to: out + "/ds")
        return (out, out + "/ds")
    }

    @Test func truncatedFileIsAChecksumMismatch() throws {
        let (out, ds) = try written()
        defer { Fixtures.remove(out) }
        let path = ds + "/interactions.tsv"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 7).write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: DataError.self) { try Dataset.load(from: ds) }
        #expect(error.code == .checksumMismatch)
        #expect(error.message.contains("interactions.tsv"))
    }

    /// The manifest's counts are not under the file checksums: a huge or negative one is a reported mismatch,
    /// never an allocation of that size (Int.max made the reservation wrap and corrupt the heap).
    @Test(arguments: ["9223372036854775807", "100000000000", "-5"])
    func implausibleManifestCountIsAMismatch(count: String) throws {
        let (out, ds) = try written()
        defer { Fixtures.remove(out) }
        let path = ds + "/manifest.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let edited = text.replacingOccurrences(
            of: #""interactions_kept" : \d+"#, with: "\"interactions_kept\" : \(count)", options: .regularExpression)
        try #require(edited != text)
        try edited.write(toFile: path, atomically: true, encoding: .utf8)
        let error = try #require(throws: DataError.self) { try Dataset.load(from: ds) }
        #expect(error.message.contains("interactions_kept"), "\(error)")
    }

    @Test func missingFileIsReported() throws {
        let (out, ds) = try written()
        defer { Fixtures.remove(out) }
        try FileManager.default.removeItem(atPath: ds + "/items.tsv")
        let error = try #require(throws: DataError.self) { try Dataset.load(from: ds) }
        #expect(error.code == .fileNotFound)
        #expect(error.message.contains("items.tsv"))
    }

    @Test(arguments: [
        ("\"format_version\" : 2", "\"format_version\" : 3", "format_version"),
        ("\"format_version\" : 2", "\"format_version\" : 1", "format_version"),
        ("\"format\" : \"fedrec-dataset\"", "\"format\" : \"other\"", "format"),
    ])
    func formatVersionMismatch(find: String, replace: String, field: String) throws {
        let (out, ds) = try written()
        defer { Fixtures.remove(out) }
        let path = ds + "/manifest.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(find))
        try text.replacingOccurrences(of: find, with: replace).write(toFile: path, atomically: true, encoding: .utf8)
        let error = try #require(throws: DataError.self) { try Dataset.load(from: ds) }
        #expect(error.code == .formatVersionMismatch)
        #expect(error.field == field)
        #expect(error.message.contains("manifest.json"))
    }

    @Test func tamperedChecksumIsReported() throws {
        let (out, ds) = try written()
        defer { Fixtures.remove(out) }
        let path = ds + "/manifest.json"
        let manifest = try Dataset.load(from: ds).manifest
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try text.replacingOccurrences(of: manifest.checksum, with: String(repeating: "0", count: 64))
            .write(toFile: path, atomically: true, encoding: .utf8)
        let error = try #require(throws: DataError.self) { try Dataset.load(from: ds) }
        #expect(error.code == .checksumMismatch)
        #expect(error.field == "checksum")
    }

    @Test(arguments: [
        ("interactions.tsv", "4.5\t1004", "4.5\tsoon", 0, "timestamp"),
        ("items.tsv", "B (1980)\tComedy|Drama\t1980", "B (1980)\tComedy|Drama", 0, "year"),
        ("item_features.tsv", "\n1\t", "\n7\t", 3, "row"),
        ("interactions.tsv", "1\t2\t", "1\t77\t", 0, "item_id"),
    ])
    func corruptedLinesNameFileLineAndField(file: String, find: String, replace: String, line: Int, field: String)
        throws
    {
        let (out, ds) = try written()
        defer { Fixtures.remove(out) }
        let path = ds + "/" + file
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let range = try #require(text.range(of: find))
        let expectedLine = line > 0 ? line : text[..<range.lowerBound].filter { $0 == "\n" }.count + 1
        try text.replacingCharacters(in: range, with: replace).write(toFile: path, atomically: true, encoding: .utf8)
        // The checksum catches any change; without verification the parser names the line.
        #expect(throws: DataError.self) { try Dataset.load(from: ds) }
        let error = try #require(throws: DataError.self) { try Dataset.load(from: ds, verifyChecksums: false) }
        #expect(error.message.contains(file))
        #expect(error.line == expectedLine)
        #expect(error.field == field)
        #expect(error.message.contains("line \(expectedLine)"))
    }

    @Test func failedImportLeavesEarlierDataSetUntouched() throws {
        let (out, ds) = try written()
        defer { Fixtures.remove(out) }
        let before = try Dataset.load(from: ds).checksum
        let bad = try Fixtures.folder([
            "ratings.csv": "userId,movieId,rating,timestamp\n1,1,x,1\n", "movies.csv": Self.movies,
        ])
        defer { Fixtures.remove(bad) }
        #expect(throws: DataError.self) {
            try DatasetImporter.importDataset(source: bad).write(to: ds, force: true)
        }
        #expect(try Dataset.load(from: ds).checksum == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["ds"])
    }

    @Test func splitExportOfLoadedDataSetMatchesImport() throws {
        let src = try source()
        let (out, ds) = try written()
        defer {
            Fixtures.remove(out)
            Fixtures.remove(src)
        }
        let fromImport = SplitExport.files(for: try DatasetImporter.importDataset(source: src).content)
        let fromLoad = SplitExport.files(for: try Dataset.load(from: ds).content)
        #expect(fromImport.map(\.bytes) == fromLoad.map(\.bytes))
        try SplitExport.write(try Dataset.load(from: ds).content, to: out + "/split")
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: out + "/split").sorted() == [
                "items.tsv", "test.tsv", "train.tsv",
            ])
        // Writing again replaces the files in place (with force); a data-set folder is refused and left as it was.
        try SplitExport.write(try Dataset.load(from: ds).content, to: out + "/split", force: true)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: out + "/split").sorted() == [
                "items.tsv", "test.tsv", "train.tsv",
            ])
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: out + "/split/train.tsv"))) == fromLoad[0].bytes)
        let before = try FileManager.default.contentsOfDirectory(atPath: ds).sorted()
        #expect(throws: DataError.self) { try SplitExport.write(try Dataset.load(from: ds).content, to: ds) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: ds).sorted() == before)
        _ = try Dataset.load(from: ds)
    }

    @Test func roundTripEscapesIDsAndWorksWithoutTimestamps() throws {
        // Quoted CSV ids may hold tabs and backslashes; the data-set files escape them.
        let users = ["plain", "tab\there", "back\\slash", "a-very-long-user-identifier-over-16"]
        var text = "user,item,value\n"
        for user in users {
            for item in ["x", "y\tz", "w\\v", "q", "r", "s"] { text += "\"\(user)\",\"\(item)\",1\n" }
        }
        let src = try Fixtures.folder(["interactions.csv": text])
        let out = try Fixtures.temporaryFolder()
        defer {
            Fixtures.remove(src)
            Fixtures.remove(out)
        }
        let result = try DatasetImporter.importDataset(source: src)
        #expect(result.content.hasTimestamps == false)
        #expect(Set(result.content.userIDs) == Set(users))
        #expect(result.content.itemIDs.contains("y\tz"))
        try result.write(to: out + "/ds")
        let loaded = try Dataset.load(from: out + "/ds")
        #expect(loaded.content == result.content)
        #expect(loaded.split == result.split)
        #expect(loaded.itemIndex(of: "w\\v") == result.content.itemIDs.firstIndex(of: "w\\v"))
    }

    @Test func detectsFormatsFromFolderContents() throws {
        let cases: [([String], SourceFormat)] = [
            (["u.data"], .ml100k), (["ratings.csv", "movies.csv"], .mlLatestSmall),
            (["interactions.tsv"], .generic), (["interactions.csv", "items.csv"], .generic),
        ]
        for (names, format) in cases {
            let folder = try Fixtures.folder(Dictionary(uniqueKeysWithValues: names.map { ($0, "") }))
            defer { Fixtures.remove(folder) }
            #expect(try DatasetImporter.detectFormat(at: folder) == format)
        }
        let missing = try #require(throws: DataError.self) { try DatasetImporter.detectFormat(at: "/nonexistent/x") }
        #expect(missing.code == .fileNotFound)
    }
}
