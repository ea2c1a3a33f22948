import FedRecData
import Foundation
import Testing

/// Item and user features: layout, names, normalisation.
@Suite struct FeatureTests {
    static let ratings =
        "userId,movieId,rating,timestamp\n"
        + ["10", "20", "30", "40", "50"].enumerated().map { "7,\($1),4.0,\($0)\n" }.joined()
    static let movies = """
        movieId,title,genres
        10,"Good, the Bad and the Ugly, The (1966)",Action|Western
        20,"11'09""01 - September 11 (2002)",Drama
        30,Toy Story (1995),Adventure|Animation|Children|Comedy
        40,Untitled,(no genres listed)
        50,Metropolis (1927),Drama|Sci-Fi
        60,Never Rated (1905),Drama

        """
    static let tags = """
        userId,movieId,tag,timestamp
        7,10,spaghetti western,1
        7,10,"Clint, Eastwood",2
        8,10,Spaghetti Western ,3
        8,60,silent,4
        7,30,watched late,3
        7,60,held out,9

        """

    func importSmall(tags: String = Self.tags) throws -> ImportResult {
        let folder = try Fixtures.folder([
            "ratings.csv": Self.ratings, "movies.csv": Self.movies, "tags.csv": tags,
        ])
        defer { Fixtures.remove(folder) }
        return try DatasetImporter.importDataset(
            source: folder, options: ImportOptions(titleBuckets: 64, tagBuckets: 32))
    }

    /// Column ranges of each feature group, from the names.
    func groups(_ names: [String]) -> [String: [Int]] {
        var groups: [String: [Int]] = [:]
        for (column, name) in names.enumerated() {
            let key =
                name.hasPrefix("title#") ? "title" : name.hasPrefix("tag#") ? "tag" : String(name.prefix { $0 != ":" })
            groups[key, default: []].append(column)
        }
        return groups
    }

    @Test func namesAndLayout() throws {
        let result = try importSmall()
        let names = result.content.itemFeatureNames
        let genres = ["Action", "Adventure", "Animation", "Children", "Comedy", "Drama", "Sci-Fi", "Western"]
        #expect(Array(names.prefix(8)) == genres.map { "genre:\($0)" })
        #expect(names[8] == "year:unknown" && names[9] == "year:before-1910" && names[10] == "year:1910s")
        #expect(names[20] == "year:2010s")
        #expect(names[21] == "title#0" && names[21 + 63] == "title#63" && names[21 + 64] == "tag#0")
        #expect(names.count == 8 + 13 + 64 + 32)
        #expect(result.content.itemFeatures.columns == names.count)
        #expect(result.content.itemFeatures.rows == 5)
        #expect(result.content.userFeatures.columns == 0 && result.content.userFeatures.rows == 1)
    }

    @Test func quotedTitlesAndYears() throws {
        let c = try importSmall().content
        #expect(c.titles[0] == "Good, the Bad and the Ugly, The (1966)")
        #expect(c.titles[1] == "11'09\"01 - September 11 (2002)")
        #expect(c.years == [1966, 2002, 1995, nil, 1927])
        #expect(c.genres[3] == [])
        // Content-only: movie 60 nobody rated, with its tag.
        let cold = try #require(c.contentOnlyItems.first)
        #expect(c.contentOnlyItems.count == 1)
        #expect(cold.id == "60" && cold.year == 1905 && cold.genres == ["Drama"])
        let names = c.itemFeatureNames
        #expect(cold.features.contains { names[Int($0.column)] == "year:before-1910" })
        #expect(cold.features.contains { names[Int($0.column)].hasPrefix("tag#") })
        #expect(c.contentOnlyFeatures.rows == 1)
    }

    @Test func everyGroupIsL2Normalised() throws {
        let c = try importSmall().content
        let groups = groups(c.itemFeatureNames)
        for row in 0..<c.itemFeatures.rows {
            let entries = c.itemFeatures.row(row)
            #expect(entries.map(\.column) == entries.map(\.column).sorted())
            for (name, columns) in groups {
                let values = entries.filter { columns.contains($0.column) }.map(\.value)
                guard !values.isEmpty else { continue }
                let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
                #expect(abs(norm - 1) < 1e-5, "row \(row) group \(name)")
            }
        }
        // Multi-hot genres: 1/sqrt(count).
        let toyStory = c.itemFeatures.row(2).filter { $0.column < 8 }
        #expect(toyStory.count == 4 && toyStory.allSatisfy { abs($0.value - 0.5) < 1e-6 })
        // Year one-hot.
        let years = c.itemFeatures.row(3).filter { (8..<21).contains($0.column) }
        #expect(years.map(\.column) == [8] && years[0].value == 1)
    }

    @Test func titleTokensAreHashedWithoutTheYear() throws {
        let c = try importSmall().content
        // "Toy Story (1995)" -> "toy", "story"; the year is not a token.
        let expected = Set(["toy", "story"].map { 21 + Int(fnv1a64($0) % 64) })
        let title = Set(c.itemFeatures.row(2).map(\.column).filter { (21..<85).contains($0) })
        #expect(title == expected)
        #expect(!title.contains(21 + Int(fnv1a64("1995") % 64)) || expected.contains(21 + Int(fnv1a64("1995") % 64)))
    }

    @Test func tagsAreLowercasedTrimmedAndDistinct() throws {
        let c = try importSmall().content
        let tagColumns = c.itemFeatures.row(0).filter { $0.column >= 85 }
        // "spaghetti western" twice (case and space differ) counts once; "clint, eastwood" once.
        let expected = Set(["spaghetti western", "clint, eastwood"].map { 85 + Int(fnv1a64($0) % 32) })
        #expect(Set(tagColumns.map(\.column)) == expected)
        let norm = tagColumns.reduce(0) { $0 + $1.value * $1.value }.squareRoot()
        #expect(abs(norm - 1) < 1e-6)
    }

    /// User 7 rated at times 0-4: its last interaction is its test set, the one before its validation slice,
    /// so its fit period ends at time 2 and its tags after that (on 30 at 3, on 60 at 9) are held-out behaviour.
    /// User 8 has no kept interactions; its tags stay.
    @Test func tagsAppliedAfterTheirUsersFitPeriodAreLeftOut() throws {
        let result = try importSmall()
        #expect(result.manifest.counts.tagsAfterFitPeriod == 2)
        let c = result.content
        #expect(!c.itemFeatures.row(2).contains { $0.column >= 85 })
        let cold = try #require(c.contentOnlyItems.first)
        let silent = Int32(85 + Int(fnv1a64("silent") % 32))
        let coldTags = cold.features.map(\.column).filter { $0 >= 85 }
        #expect(coldTags == [silent])
    }

    @Test func tagsNeedTheirUserAndTimestamp() throws {
        let missing = try #require(throws: DataError.self) {
            try importSmall(tags: "userId,movieId,tag\n7,10,x\n")
        }
        #expect(missing.message.contains("timestamp") && (missing.file ?? "").hasSuffix("tags.csv"))
        let bad = try #require(throws: DataError.self) {
            try importSmall(tags: "userId,movieId,tag,timestamp\n7,10,x,1\n7,20,y,soon\n")
        }
        #expect(bad.code == .invalidField && bad.line == 3 && bad.field == "timestamp")
    }

    @Test func ml100kUserFeaturesAndLatin1Titles() throws {
        var data = ""
        for user in ["1", "2"] {
            for item in 1...5 { data += "\(user)\t\(item)\t3\t\(880_000_000 + item)\n" }
        }
        var item = ""
        let titles = ["Caf\u{E9} (1995)", "B (1960)", "C", "D (1930)", "E (1977)", "Unrated (1999)"]
        for (k, title) in titles.enumerated() {
            let date = k == 2 ? "" : "01-Jan-\(k == 3 ? "1931" : "2000")"
            let flags = (0..<19).map { $0 == (k % 19) || $0 == 8 ? "1" : "0" }.joined(separator: "|")
            item += "\(k + 1)|\(title)|\(date)||http://x|\(flags)\n"
        }
        let user = "1|24|M|technician|85711\n2|61|F|other|94043\n"
        let occupations = ["administrator", "other", "technician"].joined(separator: "\n") + "\n"
        let folder = try Fixtures.folder(["u.data": data, "u.user": user, "u.occupation": occupations])
        defer { Fixtures.remove(folder) }
        // u.item in Latin-1: é is the single byte 0xE9.
        let latin1 = item.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }
        try Data(latin1).write(to: URL(fileURLWithPath: folder + "/u.item"))
        let c = try DatasetImporter.importDataset(source: folder).content
        #expect(c.sourceFormat == .ml100k)
        #expect(c.titles[0] == "Caf\u{E9} (1995)")
        #expect(c.years == [2000, 2000, nil, 1931, 2000])
        #expect(c.genres[0] == ["unknown", "Drama"])
        #expect(c.contentOnlyItems.map(\.id) == ["6"])
        #expect(
            c.userFeatureNames == [
                "age:<18", "age:18-24", "age:25-34", "age:35-44", "age:45-49", "age:50-55", "age:56+",
                "gender:F", "gender:M", "occupation:administrator", "occupation:other", "occupation:technician",
            ])
        #expect(c.userFeatures.row(0).map(\.column) == [1, 8, 11])
        #expect(c.userFeatures.row(1).map(\.column) == [6, 7, 10])
        #expect(c.userFeatures.values.allSatisfy { $0 == 1 })
        #expect(c.userAttributeNames == ["age", "gender", "occupation", "zip"])
        #expect(c.userAttributes[1] == ["61", "F", "other", "94043"])
    }

    @Test(.enabled(if: Fixtures.hasML100k, "needs ../shared/data/ml-100k (not redistributable)"))
    func ml100kHasThirtyUserFeatureColumns() throws {
        let c = try DatasetImporter.importDataset(format: .ml100k, source: Fixtures.ml100k).content
        #expect(c.userFeatures.columns == 30)
        #expect(c.userFeatures.rows == 943)
        #expect(c.itemFeatureNames.filter { $0.hasPrefix("genre:") }.count == 19)
    }

    @Test func genericItemsFileWithTagsAndGenres() throws {
        let interactions = "user\titem\nu\ta\nu\tb\nu\tc\nu\td\nu\te\n"
        let items = "item\ttitle\tgenres\ttags\na\tAlpha (2001)\tX|Y\tfun|FUN\nq\tQuiet\tY\t\n"
        let folder = try Fixtures.folder(["interactions.tsv": interactions, "items.tsv": items])
        defer { Fixtures.remove(folder) }
        let c = try DatasetImporter.importDataset(source: folder).content
        #expect(c.itemFeatureNames.prefix(2) == ["genre:X", "genre:Y"])
        #expect(c.itemFeatureNames.contains("tag#0"))
        #expect(c.titles == ["Alpha (2001)", "", "", "", ""])
        #expect(c.contentOnlyItems.map(\.id) == ["q"])
        #expect(c.itemFeatures.row(1).count == 1)  // unknown year only
    }
}
