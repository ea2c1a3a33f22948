import FedRecData
import Testing

/// Cleaning and split rules of `fedrec-eval-v1`.
@Suite struct CleaningTests {
    func importGeneric(_ interactions: String, name: String = "interactions.tsv", items: String? = nil) throws
        -> ImportResult
    {
        var files = [name: interactions]
        if let items { files["items.tsv"] = items }
        let folder = try Fixtures.folder(files)
        defer { Fixtures.remove(folder) }
        return try DatasetImporter.importDataset(format: .generic, source: folder)
    }

    /// (user id, item id, value, timestamp) of the kept interactions, in stored order.
    func rows(_ result: ImportResult) -> [String] {
        let c = result.content
        return (0..<c.interactions.count).map {
            "\(c.userIDs[Int(c.interactions.users[$0])]) \(c.itemIDs[Int(c.interactions.items[$0])]) "
                + "\(c.interactions.valueTexts[$0]) \(c.interactions.timestampTexts[$0])"
        }
    }

    @Test func duplicatesKeepEarliestThenFirstInFile() throws {
        let text = """
            user\titem\tvalue\ttimestamp
            u\ta\t1\t50
            u\tb\t2\t10
            u\ta\t3\t20
            u\tb\t4\t10
            u\tc\t1\t1
            u\td\t1\t2
            u\te\t1\t3
            u\ta\t5\t20

            """
        let result = try importGeneric(text)
        // a: earliest is the row with timestamp 20 (first of the two); b: tie at 10, first in file wins.
        #expect(rows(result) == ["u b 2 10", "u a 3 20", "u c 1 1", "u d 1 2", "u e 1 3"])
        #expect(result.manifest.counts.duplicatesRemoved == 3)
        #expect(result.manifest.counts.rawRows == 8)
    }

    @Test func duplicatesWithoutTimestampsKeepFirstInFile() throws {
        let text = "user,item,value\nu,a,1\nu,b,2\nu,a,3\nu,c,1\nu,d,1\nu,e,1\n"
        let result = try importGeneric(text, name: "interactions.csv")
        #expect(result.content.hasTimestamps == false)
        #expect(rows(result).first == "u a 1 ")
        #expect(result.manifest.counts.duplicatesRemoved == 1)
    }

    @Test func usersWithFewerThanFiveAfterDeduplicationAreDroppedOnce() throws {
        var text = "user\titem\ttimestamp\n"
        // keep: 5 distinct items. drop4: 4 items. dup: 5 rows but one duplicate -> 4 after de-dup.
        for (k, item) in ["a", "b", "c", "d", "e"].enumerated() { text += "keep\t\(item)\t\(k)\n" }
        for (k, item) in ["a", "b", "c", "x"].enumerated() { text += "drop4\t\(item)\t\(k)\n" }
        for (k, item) in ["a", "b", "c", "d", "d"].enumerated() { text += "dup\t\(item)\t\(k)\n" }
        let result = try importGeneric(text)
        #expect(result.content.userIDs == ["keep"])
        #expect(result.manifest.counts.usersDropped == 2)
        #expect(result.manifest.counts.interactionsOfDroppedUsers == 8)
        // Items are never dropped: x (rated only by a dropped user) stays in the catalogue.
        #expect(result.content.itemIDs == ["a", "b", "c", "d", "e", "x"])
        #expect(result.split.users.count == 1)
    }

    @Test func genericKeepsOnlyPositiveValues() throws {
        let text = "user\titem\tvalue\nu\ta\t1\nu\tz\t0\nu\tb\t2.5\nu\ty\t-1\nu\tc\t1e0\nu\td\t3\nu\te\t1\n"
        let result = try importGeneric(text)
        #expect(result.manifest.counts.nonPositiveValueRows == 2)
        #expect(result.content.itemIDs == ["a", "b", "c", "d", "e"])  // z, y are not in the catalogue
        #expect(result.content.interactions.valueTexts == ["1", "2.5", "1e0", "3", "1"])
    }

    @Test func genericWithoutValueColumnKeepsAllRows() throws {
        let text = "item,user\na,u\nb,u\nc,u\nd,u\ne,u\n"
        let result = try importGeneric(text, name: "interactions.csv")
        #expect(result.content.interactions.count == 5)
        #expect(result.content.interactions.valueTexts.allSatisfy { $0.isEmpty })
    }

    @Test func idsAreTrimmedOfWhitespaceAndCarriageReturns() throws {
        let text = "user , item , timestamp\r\n u1 , a ,1\r\nu1,\"b\", 2 \r\nu1,c,3\r\nu1,d,4\r\nu1,e,5\r\n"
        let result = try importGeneric(text, name: "interactions.csv")
        #expect(result.content.userIDs == ["u1"])
        #expect(result.content.itemIDs == ["a", "b", "c", "d", "e"])
        #expect(result.content.interactions.timestampTexts == ["1", "2", "3", "4", "5"])
    }

    @Test func fnv1a64KnownAnswers() {
        #expect(fnv1a64("") == 0xcbf2_9ce4_8422_2325)
        #expect(fnv1a64("a") == 0xaf63_dc4c_8601_ec8c)
        #expect(fnv1a64("foobar") == 0x8594_4171_f739_67e8)
    }

    @Test func withoutTimestampsOrderIsFNVThenItemID() throws {
        let items = (0..<12).map { "item\($0)" }
        let text = "user\titem\n" + items.map { "alice\t\($0)\n" }.joined()
        let result = try importGeneric(text)
        let expected = items.sorted {
            let (a, b) = (fnv1a64("alice|" + $0), fnv1a64("alice|" + $1))
            return a != b ? a < b : Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8))
        }
        let user = try #require(result.split.users.first)
        let ordered = (user.train + user.test).map { result.content.itemIDs[Int($0)] }
        #expect(ordered == expected)
        #expect(user.test.count == 3)  // (12 + 4) / 5
        let files = SplitExport.files(for: result.content)
        #expect(
            String(decoding: files[1].bytes, as: UTF8.self)
                == "user_id\titem_id\ttimestamp\n" + expected.suffix(3).map { "alice\t\($0)\t\n" }.joined())
    }

    @Test func equalTimestampsFallBackToItemIDBytes() throws {
        // Numeric order would put 9 before 10; byte order puts "10" first. Non-ASCII sorts by UTF-8 bytes.
        let text = "user\titem\ttimestamp\nu\t9\t7\nu\t10\t7\nu\té\t7\nu\tz\t7\nu\tZ\t7\nu\t100\t3\n"
        let result = try importGeneric(text)
        let user = try #require(result.split.users.first)
        let ordered = (user.train + user.test).map { result.content.itemIDs[Int($0)] }
        #expect(ordered == ["100", "10", "9", "Z", "z", "é"])
    }

    @Test(arguments: [(5, 1, 4, 1), (6, 2, 4, 1), (10, 2, 8, 1), (11, 3, 8, 1), (12, 3, 9, 1), (21, 5, 16, 2)])
    func testAndValidationSizes(n: Int, test: Int, train: Int, validation: Int) throws {
        let text = "user\titem\ttimestamp\n" + (0..<n).map { "u\ti\($0)\t\($0)\n" }.joined()
        let user = try #require(try importGeneric(text).split.users.first)
        #expect(user.test.count == test)
        #expect(user.train.count == train)
        #expect(user.validationCount == validation)
        #expect(Array(user.fit) + Array(user.validation) == user.train)
        // Temporal: the test items are the latest ones.
        #expect(user.test.allSatisfy { t in user.train.allSatisfy { $0 < t } })
    }

    @Test func usersAreInByteOrderAndCatalogueInFirstAppearanceOrder() throws {
        var text = "user\titem\ttimestamp\n"
        for user in ["b", "a", "B", "ä"] {
            for (k, item) in ["z", "y", "x", "w", "v"].enumerated() { text += "\(user)\t\(item)\t\(k)\n" }
        }
        let result = try importGeneric(text)
        #expect(result.content.userIDs == ["B", "a", "b", "ä"])
        #expect(result.content.itemIDs == ["z", "y", "x", "w", "v"])
        #expect(result.split.users.map(\.userIndex) == [0, 1, 2, 3])
        let folds = result.split.fold(.test)
        #expect(folds.allSatisfy { $0.heldOut.count == 1 && $0.known.count == 4 })
    }

    @Test func manyShortAndLongIDsInternConsistently() throws {
        // Ids up to and beyond 16 bytes (the packed fast path), enough to grow the intern table.
        var text = "user\titem\ttimestamp\n"
        let users = (0..<300).map { $0 % 2 == 0 ? "u\($0)" : "a-rather-long-user-identifier-\($0)" }
        let items = (0..<7).map { "item-with-a-long-name-\($0)" } + ["1234567890123456", "12345678901234567"]
        for (k, user) in users.enumerated() {
            for (j, item) in items.enumerated() where (j + k) % 3 != 0 { text += "\(user)\t\(item)\t\(j)\n" }
        }
        let result = try importGeneric(text)
        #expect(result.content.userIDs == users.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        #expect(Set(result.content.itemIDs) == Set(items))
        #expect(result.manifest.counts.duplicatesRemoved == 0)
        #expect(
            result.content.interactions.count
                == users.indices.reduce(0) { n, k in
                    n + items.indices.filter { ($0 + k) % 3 != 0 }.count
                })
    }
}
