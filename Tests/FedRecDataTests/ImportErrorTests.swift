import Foundation
import Testing

@testable import FedRecData

/// Bad input fails with a `DataError` naming file, line and field; `skipInvalid` counts such rows.
@Suite struct ImportErrorTests {
    static let movies = "movieId,title,genres\n1,A (1990),Drama\n2,B (1991),Comedy\n"

    /// Six valid ratings of user 1, then `extra` lines.
    static func ratings(_ extra: String = "") -> String {
        "userId,movieId,rating,timestamp\n" + (1...6).map { "1,\($0),4.0,\(100 + $0)\n" }.joined() + extra
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var files: [String: String]
        var format: SourceFormat?
        var code: DataError.Code
        var file: String
        var line: Int?
        var field: String?
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "missing ratings file", files: ["movies.csv": movies], format: .mlLatestSmall,
            code: .fileNotFound, file: "ratings.csv", line: nil, field: nil),
        Case(
            name: "tab-separated ratings.csv",
            files: ["ratings.csv": "userId\tmovieId\trating\ttimestamp\n1\t1\t4.0\t5\n", "movies.csv": movies],
            format: nil, code: .missingColumn, file: "ratings.csv", line: 1, field: "userId"),
        Case(
            name: "header without rating",
            files: ["ratings.csv": "userId,movieId,timestamp\n1,1,5\n", "movies.csv": movies],
            format: .mlLatestSmall, code: .missingColumn, file: "ratings.csv", line: 1, field: "rating"),
        Case(
            name: "non-numeric rating", files: ["ratings.csv": ratings("1,7,good,107\n"), "movies.csv": movies],
            format: .mlLatestSmall, code: .invalidField, file: "ratings.csv", line: 8, field: "rating"),
        Case(
            name: "non-numeric timestamp",
            files: ["ratings.csv": ratings("1,7,4.0,yesterday\n"), "movies.csv": movies],
            format: .mlLatestSmall, code: .invalidField, file: "ratings.csv", line: 8, field: "timestamp"),
        Case(
            name: "row with too few fields", files: ["ratings.csv": ratings("1,7,4.0\n"), "movies.csv": movies],
            format: .mlLatestSmall, code: .tooFewFields, file: "ratings.csv", line: 8, field: "timestamp"),
        Case(
            name: "empty ratings file", files: ["ratings.csv": "", "movies.csv": movies], format: .mlLatestSmall,
            code: .emptyFile, file: "ratings.csv", line: 1, field: nil),
        Case(
            name: "header only", files: ["ratings.csv": "userId,movieId,rating,timestamp\n", "movies.csv": movies],
            format: .mlLatestSmall, code: .emptyFile, file: "ratings.csv", line: nil, field: nil),
        Case(
            name: "unterminated quote in movies.csv",
            files: ["ratings.csv": ratings(), "movies.csv": "movieId,title,genres\n1,\"A (1990),Drama\n"],
            format: .mlLatestSmall, code: .invalidField, file: "movies.csv", line: 2, field: "title"),
        Case(
            name: "unknown format", files: ["notes.txt": "hello\n"], format: nil, code: .unknownFormat,
            file: "fedrec-data-tests-", line: nil, field: nil),
        Case(
            name: "u.data with too few fields", files: ["u.data": "1\t2\t3\t4\n1\t3\n"], format: .ml100k,
            code: .tooFewFields, file: "u.data", line: 2, field: "rating"),
        Case(
            name: "generic header with two user columns",
            files: ["interactions.tsv": "user\titem\tuser\ttimestamp\nu1\ti1\tu2\t5\n"], format: .generic,
            code: .invalidField, file: "interactions.tsv", line: 1, field: "user"),
        Case(
            name: "movies.csv lists an id again with another title",
            files: ["ratings.csv": ratings(), "movies.csv": movies + "1,C (1992),Drama\n"], format: .mlLatestSmall,
            code: .invalidField, file: "movies.csv", line: 4, field: "id"),
        Case(
            name: "u.item lists an id again with another title",
            files: [
                "u.data": "1\t2\t3\t4\n",
                "u.item": "2|B (1991)|01-Jan-1991||x" + String(repeating: "|0", count: 19) + "\n"
                    + "2|C (1992)|01-Jan-1992||x" + String(repeating: "|0", count: 19) + "\n",
            ], format: .ml100k, code: .invalidField, file: "u.item", line: 2, field: "id"),
        Case(
            name: "u.user lists a user again with other attributes",
            files: ["u.data": "1\t2\t3\t4\n", "u.user": "1|24|M|technician|85711\n1|25|M|technician|85711\n"],
            format: .ml100k, code: .invalidField, file: "u.user", line: 2, field: "user id"),
        Case(
            name: "u.user age off any person's",
            files: ["u.data": "1\t2\t3\t4\n", "u.user": "1|-5|M|technician|85711\n"],
            format: .ml100k, code: .invalidField, file: "u.user", line: 1, field: "age"),
        Case(
            name: "u.user occupation u.occupation does not list",
            files: [
                "u.data": "1\t2\t3\t4\n", "u.occupation": "technician\nwriter\n",
                "u.user": "1|24|M|technician|85711\n2|30|F|astronaut|10001\n",
            ], format: .ml100k, code: .invalidField, file: "u.user", line: 2, field: "occupation"),
        Case(
            name: "u.data comma-separated", files: ["u.data": "1,2,3,4\n"], format: .ml100k,
            code: .tooFewFields, file: "u.data", line: 1, field: "item id"),
        Case(
            name: "generic non-numeric value",
            files: ["interactions.tsv": "user\titem\tvalue\nu1\ti1\t1\nu1\ti2\tx\n"], format: .generic,
            code: .invalidField, file: "interactions.tsv", line: 3, field: "value"),
        Case(
            name: "generic header without item", files: ["interactions.csv": "user,thing\nu1,i1\n"], format: nil,
            code: .missingColumn, file: "interactions.csv", line: 1, field: "item"),
        Case(
            name: "generic empty user id", files: ["interactions.csv": "user,item\n,i1\n"], format: .generic,
            code: .invalidField, file: "interactions.csv", line: 2, field: "user"),
        Case(
            name: "no user with enough interactions",
            files: ["interactions.csv": "user,item\nu1,i1\nu1,i2\nu2,i1\nu1,i2\n"], format: .generic,
            code: .emptyFile, file: "fedrec-data-tests-", line: nil, field: nil),
        Case(
            name: "ratings.csv row with an extra field",
            files: ["ratings.csv": ratings("1,7,4.0,107,extra\n"), "movies.csv": movies], format: .mlLatestSmall,
            code: .tooManyFields, file: "ratings.csv", line: 8, field: "#5"),
        Case(
            name: "u.data row with an extra field", files: ["u.data": "1\t2\t3\t4\n1\t3\t3\t4\t9\n"],
            format: .ml100k, code: .tooManyFields, file: "u.data", line: 2, field: "#5"),
        Case(
            name: "generic unquoted delimiter in an id",
            files: ["interactions.csv": "user,item\nu1,i1\nu1,Movie, The\n"], format: .generic,
            code: .tooManyFields, file: "interactions.csv", line: 3, field: "#3"),
        Case(
            name: "text after a closing quote",
            files: ["ratings.csv": ratings("\"1\"x,7,4.0,107\n"), "movies.csv": movies],
            format: .mlLatestSmall, code: .invalidField, file: "ratings.csv", line: 8, field: "userId"),
    ]

    /// Quoted ids lose the whitespace inside their quotes too (the data-set files, unquoted, are read back
    /// trimmed); an empty trailing field is tolerated; a BOM on a headerless file is not part of its first id.
    @Test func quotedPaddedIdsTrailingDelimitersAndHeaderlessBOMs() throws {
        var rows = "user,item,timestamp\n"
        for k in 1...5 { rows += "\" u1 \",i\(k),\(k)\nu1,j\(k),\(k),\n" }
        let folder = try Fixtures.folder(["interactions.csv": rows])
        let out = try Fixtures.temporaryFolder()
        defer {
            Fixtures.remove(folder)
            Fixtures.remove(out)
        }
        let result = try DatasetImporter.importDataset(format: .generic, source: folder)
        #expect(result.content.userIDs == ["u1"] && result.content.interactions.count == 10)
        _ = try result.write(to: out + "/ds")
        #expect(try Dataset.load(from: out + "/ds").content.userIDs == ["u1"])

        let data = (1...6).map { "7\t\($0)\t3\t\(880_000_000 + $0)\n" }.joined()
        let plain = try Fixtures.folder(["u.data": data])
        let marked = try Fixtures.temporaryFolder()
        defer {
            Fixtures.remove(plain)
            Fixtures.remove(marked)
        }
        try Data([0xEF, 0xBB, 0xBF] + Array(data.utf8)).write(to: URL(fileURLWithPath: marked + "/u.data"))
        let a = try DatasetImporter.importDataset(format: .ml100k, source: plain)
        let b = try DatasetImporter.importDataset(format: .ml100k, source: marked)
        #expect(b.content.userIDs == ["7"] && b.content.interactions.count == 6)
        #expect(SplitExport.files(for: a.content).map(\.bytes) == SplitExport.files(for: b.content).map(\.bytes))
        // UTF-16 is named as such, not parsed as odd columns.
        try Data([0xFF, 0xFE] + Array("u\0s\0e\0r\0".utf8)).write(to: URL(fileURLWithPath: marked + "/u.data"))
        let utf16 = try #require(throws: DataError.self) {
            try DatasetImporter.importDataset(format: .ml100k, source: marked)
        }
        #expect(utf16.line == 1 && utf16.message.contains("the file is UTF-16"), "\(utf16.message)")
    }

    /// The split files are kept unless `force`, and an id the unescaped TSV cannot carry is refused.
    @Test func splitExportKeepsEarlierFilesAndRefusesTabbedIds() throws {
        let folder = try Fixtures.folder(["interactions.csv": "user,item\n" + (1...5).map { "u1,i\($0)\n" }.joined()])
        let out = try Fixtures.temporaryFolder()
        defer {
            Fixtures.remove(folder)
            Fixtures.remove(out)
        }
        let content = try DatasetImporter.importDataset(format: .generic, source: folder).content
        try "mine\n".write(toFile: out + "/items.tsv", atomically: true, encoding: .utf8)
        let kept = try #require(throws: DataError.self) { try SplitExport.write(content, to: out) }
        #expect(kept.code == .outputExists && kept.message.contains("items.tsv"), "\(kept.message)")
        #expect(try String(contentsOfFile: out + "/items.tsv", encoding: .utf8) == "mine\n")
        #expect(!FileManager.default.fileExists(atPath: out + "/train.tsv"))
        try SplitExport.write(content, to: out, force: true)
        #expect(try String(contentsOfFile: out + "/items.tsv", encoding: .utf8).hasPrefix("item_id\n"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == SplitExport.fileNames.sorted())

        let tabbed = try Fixtures.folder(
            ["interactions.csv": "user,item\n" + (1...5).map { "\"u\t1\",i\($0)\n" }.joined()])
        defer { Fixtures.remove(tabbed) }
        let refused = try #require(throws: DataError.self) {
            try SplitExport.write(
                try DatasetImporter.importDataset(format: .generic, source: tabbed).content, to: out + "/t")
        }
        #expect(refused.code == .invalidField && refused.message.contains("\"u\\t1\""), "\(refused.message)")
        #expect(!FileManager.default.fileExists(atPath: out + "/t"))
    }

    @Test(arguments: cases)
    func badInputNamesFileLineAndField(_ c: Case) throws {
        let folder = try Fixtures.folder(c.files)
        defer { Fixtures.remove(folder) }
        let error = try #require(throws: DataError.self) {
            try DatasetImporter.importDataset(format: c.format, source: folder)
        }
        #expect(error.code == c.code)
        #expect(error.message.contains(c.file))
        #expect(error.file?.contains(c.file) == true)
        #expect(error.line == c.line)
        #expect(error.field == c.field)
        if let line = c.line { #expect(error.message.contains("line \(line)")) }
        if let field = c.field { #expect(error.message.contains("field '\(field)'")) }
        #expect(error.description == error.message)
    }

    /// Ids that are not UTF-8 (a Latin-1 file) are refused, naming the row, instead of merging distinct ids;
    /// a UTF-8 byte-order mark before the header is ignored.
    @Test func nonUTF8IdsAreRefusedAndAByteOrderMarkIsIgnored() throws {
        for long in [false, true] {
            let folder = try Fixtures.temporaryFolder()
            defer { Fixtures.remove(folder) }
            let suffix = Array((long ? "-a-long-user-name-xx" : "").utf8)
            var bytes = Array("user,item\n".utf8)
            for first in [UInt8(0xE9), 0xE8] {
                for item in 1...6 { bytes += [first] + suffix + Array(",i\(item)\n".utf8) }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: folder + "/interactions.csv"))
            let error = try #require(throws: DataError.self) {
                try DatasetImporter.importDataset(format: .generic, source: folder)
            }
            #expect(error.code == .invalidField && error.line == 2 && error.field == "user", "\(error.message)")
            #expect(error.message.contains("not valid UTF-8"))
        }
        let folder = try Fixtures.folder(
            ["interactions.csv": "\u{FEFF}user,item\n" + (1...6).map { "é,i\($0)\nè,i\($0)\n" }.joined()])
        defer { Fixtures.remove(folder) }
        let result = try DatasetImporter.importDataset(format: .generic, source: folder)
        #expect(result.content.userIDs.sorted() == ["è", "é"])
    }

    /// An id holding an ASCII control character other than tab (a NUL, an escape, DEL) is refused naming file,
    /// line and field, in the interactions and in an items file; `skipInvalid` skips such a row.
    @Test func idsWithControlCharactersAreRefused() throws {
        let good = (1...6).map { "u1,i\($0)\n" }.joined()
        for (bad, field, byte) in [
            ("u1,i\u{0}x\n", "item", "0x0"), ("\"u\u{1B}1\",i1\n", "user", "0x1B"), ("u1,i\u{7F}\n", "item", "0x7F"),
        ] {
            let folder = try Fixtures.folder(["interactions.csv": "user,item\n" + good + bad])
            defer { Fixtures.remove(folder) }
            let error = try #require(throws: DataError.self) {
                try DatasetImporter.importDataset(format: .generic, source: folder)
            }
            #expect(error.code == .invalidField && error.line == 8 && error.field == field, "\(error.message)")
            #expect(error.message.contains("control character (byte \(byte))"), "\(error.message)")
            let skipped = try DatasetImporter.importDataset(
                format: .generic, source: folder, options: ImportOptions(skipInvalid: true))
            #expect(skipped.manifest.counts.skippedRows == 1)
        }
        let folder = try Fixtures.folder([
            "interactions.csv": "user,item\n" + good, "items.csv": "item,title\ni1,A (1990)\ni\u{1}2,B (1991)\n",
        ])
        defer { Fixtures.remove(folder) }
        let error = try #require(throws: DataError.self) {
            try DatasetImporter.importDataset(
                format: .generic, source: folder + "/interactions.csv",
                options: ImportOptions(itemsFile: folder + "/items.csv"))
        }
        #expect(error.line == 3 && error.field == "item" && error.file?.hasSuffix("items.csv") == true, "\(error)")
    }

    /// Rows, users and items are Int32-indexed: a file with more interaction rows than that is refused at the row
    /// past the limit (a lower limit here stands in for 2^31 - 1), also under `skipInvalid`.
    @Test func tooManyRowsAreRefusedNotWrapped() throws {
        let folder = try Fixtures.folder(["interactions.csv": "user,item\n" + (1...8).map { "u1,i\($0)\n" }.joined()])
        defer { Fixtures.remove(folder) }
        for skipInvalid in [false, true] {
            var reader = SourceReader(options: ImportOptions(skipInvalid: skipInvalid))
            reader.maximumInteractionRows = 6
            let error = try #require(throws: DataError.self) { _ = try reader.readGeneric(source: folder) }
            #expect(error.code == .tooLarge && error.line == 8, "\(error.message)")
            #expect(error.message.contains("more than 6 interaction rows"))
        }
        var reader = SourceReader(options: ImportOptions())
        reader.maximumInteractionRows = 8
        _ = try reader.readGeneric(source: folder)
    }

    @Test func skipInvalidCountsSkippedRowsByReason() throws {
        let bad = "1,7,good,107\n1,8,4.0\n1,9,4.0,later\n1,10,3.5,110\n2,1,x,5\n"
        let folder = try Fixtures.folder(["ratings.csv": Self.ratings(bad), "movies.csv": Self.movies])
        defer { Fixtures.remove(folder) }
        let result = try DatasetImporter.importDataset(
            format: .mlLatestSmall, source: folder, options: ImportOptions(skipInvalid: true))
        let counts = result.manifest.counts
        #expect(counts.rawRows == 11)
        #expect(counts.skippedRows == 4)
        #expect(counts.interactionsKept == 7)
        let reasons = Dictionary(uniqueKeysWithValues: result.manifest.skippedReasons.map { ($0.reason, $0.count) })
        #expect(
            reasons == [
                "ratings.csv: invalid 'rating'": 2, "ratings.csv: too few fields": 1,
                "ratings.csv: invalid 'timestamp'": 1,
            ])
        // Each reason keeps where its rows were (header line 1, the six good rows 2-7).
        let lines = Dictionary(uniqueKeysWithValues: result.manifest.skippedReasons.map { ($0.reason, $0.lines) })
        #expect(
            lines == [
                "ratings.csv: invalid 'rating'": [8, 12], "ratings.csv: too few fields": [9],
                "ratings.csv: invalid 'timestamp'": [10],
            ])
        // Skipped rows add nothing to the catalogue or the users.
        #expect(result.content.itemIDs == ["1", "2", "3", "4", "5", "6", "10"])
        #expect(result.content.userIDs == ["1"])
    }

    @Test func skipInvalidListsTheFirstFiveLinesOfAReason() throws {
        let bad = (7...14).map { "1,\($0),bad,\(100 + $0)\n" }.joined()
        let folder = try Fixtures.folder(["ratings.csv": Self.ratings(bad), "movies.csv": Self.movies])
        defer { Fixtures.remove(folder) }
        let result = try DatasetImporter.importDataset(
            format: .mlLatestSmall, source: folder, options: ImportOptions(skipInvalid: true))
        #expect(
            result.manifest.skippedReasons == [
                DatasetManifest.SkipReason(
                    reason: "ratings.csv: invalid 'rating'", count: 8, lines: [8, 9, 10, 11, 12])
            ])
        // A manifest written before lines were kept still reads.
        let old = #"{"reason": "ratings.csv: too few fields", "count": 2}"#
        let decoded = try JSONDecoder().decode(DatasetManifest.SkipReason.self, from: Data(old.utf8))
        #expect(decoded == DatasetManifest.SkipReason(reason: "ratings.csv: too few fields", count: 2))
    }

    @Test func skipInvalidDoesNotHideHeaderErrors() throws {
        let folder = try Fixtures.folder(["ratings.csv": "a,b\n1,2\n", "movies.csv": Self.movies])
        defer { Fixtures.remove(folder) }
        #expect(throws: DataError.self) {
            try DatasetImporter.importDataset(
                format: .mlLatestSmall, source: folder, options: ImportOptions(skipInvalid: true))
        }
    }

    @Test func invalidOptionsAreRejected() throws {
        let error = try #require(throws: DataError.self) {
            try DatasetImporter.importDataset(source: "/nonexistent", options: ImportOptions(titleBuckets: 0))
        }
        #expect(error.code == .invalidOptions)
    }
}
