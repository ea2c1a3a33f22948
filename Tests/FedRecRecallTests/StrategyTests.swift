import FedRecData
import FedRecModel
import FedRecRecall
import FedRecTensor
import Foundation
import Testing

@Suite struct StrategyTests {
    @Test func quotasSplitKByLargestRemainder() throws {
        let quotas = try ChannelQuotas.parse("embedding=0.5,content=0.3,popularity=0.2")
        #expect(quotas == ChannelQuotas(embedding: 0.5, content: 0.3, popularity: 0.2))
        #expect(throws: RecallError.self) { try ChannelQuotas.parse("bogus=1") }
        #expect(throws: RecallError.self) { try ChannelQuotas.parse("embedding=0") }
        // Shares are relative and bounded: a huge one would overflow the slot count.
        #expect(throws: RecallError.self) { try ChannelQuotas.parse("embedding=1e308") }
        #expect(throws: RecallError.self) { try ChannelQuotas.parse("embedding=1,content=inf") }
        #expect(try ChannelQuotas.parse("embedding=1000000,content=1").embedding == 1_000_000)
    }

    /// A history state counts distinct trained items: repeating one item does not make a user warm.
    @Test func repeatedItemsCountOnce() {
        let recommender = Fixture.recommender(Fixture.modelFile())
        let configuration = RecallConfiguration()
        #expect(recommender.state(of: [1, 1, 1, 1, 1], configuration: configuration) == .short)
        #expect(recommender.state(of: [1, 2, 3, 4, 5], configuration: configuration) == .warm)
    }

    @Test func mergeFillsQuotasDeduplicatesAndFillsGaps() {
        let candidates: [RecallChannel: [(item: Int32, score: Float)]] = [
            .embedding: [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)],
            .content: [(2, 0.5), (5, 0.4)],
            .popularity: [(1, 1), (6, 0.9), (7, 0.8)],
        ]
        let merged = RecallMerger.merge(candidates: candidates, slots: [.embedding: 2, .content: 1, .popularity: 2], k: 5)
        #expect(merged.count == 5)
        #expect(Set(merged.map(\.item)).count == 5)
        #expect(merged.filter { $0.channel == .embedding }.map(\.item) == [1, 2])
        #expect(merged.filter { $0.channel == .content }.map(\.item) == [5])  // 2 was taken: de-duplicated
        #expect(merged.filter { $0.channel == .popularity }.map(\.item) == [6, 7])
        #expect(merged.first { $0.item == 1 }?.channels == [.embedding, .popularity])
        // A channel that runs dry leaves its slots to the others.
        let short = RecallMerger.merge(candidates: [.embedding: [(1, 0.9), (2, 0.8), (3, 0.7)], .content: []],
                                       slots: [.embedding: 1, .content: 2], k: 3)
        #expect(short.map(\.item) == [1, 2, 3])
    }

    @Test func warmUserGetsEmbeddingTopKWithoutSeenOrExcluded() throws {
        let recommender = Fixture.recommender(Fixture.modelFile())
        var configuration = RecallConfiguration()
        configuration.k = 10
        let history: [Int32] = [0, 3, 6, 9, 12, 15]
        let result = try recommender.recommend([RecallRequest(history: history, exclude: [30])], configuration: configuration)[0]
        #expect(result.state == .warm)
        #expect(result.items.count == 10)
        #expect(result.items.allSatisfy { $0.channel == .embedding })
        #expect(Set(result.items.map(\.item)).isDisjoint(with: history + [30]))
        let scores = result.items.map(\.score)
        #expect(scores == scores.sorted(by: >))
        // Including seen items brings history items back.
        configuration.excludeSeen = false
        configuration.k = 60
        let all = try recommender.recommend([RecallRequest(history: history)], configuration: configuration)[0]
        #expect(Set(history).isSubset(of: Set(all.items.map(\.item))))
    }

    /// `channels` lists every channel whose list held the item, also one without slots under the quotas (the
    /// default warm quotas give popularity none; the fixture's popularity falls with the index).
    @Test func channelsNameUnslottedProposersToo() throws {
        let recommender = Fixture.recommender(Fixture.modelFile())
        var configuration = RecallConfiguration()
        configuration.k = 20
        let history: [Int32] = [0, 3, 6, 9, 12, 15]
        let result = try recommender.recommend([RecallRequest(history: history)], configuration: configuration)[0]
        #expect(result.state == .warm && result.items.allSatisfy { $0.channel == .embedding })
        let popular = Set((0..<Int32(60)).filter { !history.contains($0) }.prefix(20))
        let both = result.items.filter { popular.contains($0.item) }
        #expect(!both.isEmpty)
        #expect(both.allSatisfy { $0.channels.contains(.popularity) && $0.channels.contains(.embedding) }, "\(both)")
        #expect(result.items.filter { !popular.contains($0.item) }.allSatisfy { !$0.channels.contains(.popularity) })
    }

    @Test func minimumScoreDropsWeakCandidates() throws {
        let recommender = Fixture.recommender(Fixture.modelFile())
        var configuration = RecallConfiguration()
        configuration.k = 60
        configuration.minimumScore = 0.3
        let result = try recommender.recommend([RecallRequest(history: [0, 3, 6, 9, 12])], configuration: configuration)[0]
        #expect(result.items.filter { $0.channel != .popularity }.allSatisfy { $0.score >= 0.3 })
    }

    @Test func shortHistoryMixesChannels() throws {
        let recommender = Fixture.recommender(Fixture.modelFile())
        var configuration = RecallConfiguration()
        configuration.k = 10
        let result = try recommender.recommend([RecallRequest(history: [4])], configuration: configuration)[0]
        #expect(result.state == .short)
        let channels = Set(result.items.map(\.channel))
        #expect(channels == [.embedding, .content, .popularity])
        #expect(result.items.filter { $0.channel == .embedding }.count == 6)
        #expect(Set(result.items.map(\.item)).count == 10)
    }

    @Test func coldUserGetsPopularityAndContent() throws {
        let recommender = Fixture.recommender(Fixture.modelFile())
        var configuration = RecallConfiguration()
        configuration.k = 8
        let result = try recommender.recommend([RecallRequest(history: [])], configuration: configuration)[0]
        #expect(result.state == .cold)
        #expect(result.items.count == 8)
        #expect(Set(result.items.map(\.channel)) == [.popularity, .content])
        // Popularity falls with the index: its picks are the most popular.
        #expect(result.items.filter { $0.channel == .popularity }.map(\.item).first == 0)
    }

    /// A model file without popularity and content (a model released under differential privacy has no
    /// popularity) serves a cold user from the user tower on the empty history: the same list the embedding
    /// channel gives when the cold quotas ask for it. Quotas naming only unavailable channels are an error.
    @Test func emptyHistoryWithoutPopularityOrContentUsesTheUserTower() throws {
        let recommender = Fixture.recommender(Fixture.modelFile(withOptionalParts: false))
        let cold = try recommender.recommend([RecallRequest(history: [])], configuration: RecallConfiguration())[0]
        #expect(cold.state == .cold)
        #expect(cold.items.count == 10 && cold.items.allSatisfy { $0.channel == .embedding })
        var embeddingOnly = RecallConfiguration()
        embeddingOnly.cold = ChannelQuotas(embedding: 1)
        let asked = try recommender.recommend([RecallRequest(history: [])], configuration: embeddingOnly)[0]
        #expect(asked.items.map(\.item) == cold.items.map(\.item))
        // The embedding channel still serves known histories.
        let result = try recommender.recommend([RecallRequest(history: [1, 2, 3, 4, 5])], configuration: RecallConfiguration())
        #expect(result[0].items.count == 10)
        // With content features but no popularity (a model trained under differential privacy) the default
        // cold quotas fall back to the user tower too; cold quotas asked for explicitly are not replaced.
        var withoutPopularity = Fixture.modelFile()
        withoutPopularity.itemPopularity = nil
        let dp = Fixture.recommender(withoutPopularity)
        let dpCold = try dp.recommend([RecallRequest(history: [])], configuration: RecallConfiguration())[0]
        #expect(dpCold.items.count == 10 && dpCold.items.allSatisfy { $0.channel == .embedding })
        var popularityOnly = RecallConfiguration()
        popularityOnly.cold = ChannelQuotas(popularity: 1)
        #expect {
            try dp.recommend([RecallRequest(history: [])], configuration: popularityOnly)
        } throws: { ($0 as? RecallError)?.message.contains("the popularity channel needs item popularity") == true }
        var contentOnly = RecallConfiguration()
        contentOnly.warm = ChannelQuotas(content: 1)
        contentOnly.short = ChannelQuotas(content: 1)
        #expect {
            try recommender.recommend([RecallRequest(history: [1, 2, 3, 4, 5])], configuration: contentOnly)
        } throws: { ($0 as? RecallError)?.code == .noChannel }
    }

    /// Slots a channel cannot fill go to the other channels' next candidates, the embedding channel's included
    /// when it had no slots: a model without item popularity (released under DP) with content-only quotas and a
    /// score threshold answers every item either channel scores above it, not only the content channel's.
    @Test func channelsThatRunDryAreFilledFromTheEmbeddingChannel() throws {
        var withoutPopularity = Fixture.modelFile()
        withoutPopularity.itemPopularity = nil
        let dp = Fixture.recommender(withoutPopularity)
        let history: [Int32] = [0, 3, 6, 9, 12, 15]
        let n = dp.catalogue.count
        func answer(_ quotas: ChannelQuotas, minimum: Float?) throws -> [RecalledItem] {
            var configuration = RecallConfiguration()
            configuration.warm = quotas
            configuration.short = quotas
            configuration.minimumScore = minimum
            return try dp.recommend([RecallRequest(history: history, k: n)], configuration: configuration)[0].items
        }
        // A threshold half of the content channel's candidates pass.
        let contentScores = try answer(ChannelQuotas(content: 1), minimum: nil).filter { $0.channel == .content }
            .map(\.score).sorted()
        let threshold = contentScores[contentScores.count / 2]
        let content = Set(try answer(ChannelQuotas(content: 1), minimum: threshold).filter { $0.channel == .content }
            .map(\.item))
        let embedding = Set(try answer(ChannelQuotas(embedding: 1), minimum: threshold).map(\.item))
        try #require(!embedding.isSubset(of: content), "the fixture's embedding channel adds nothing above \(threshold)")
        let filled = try answer(ChannelQuotas(content: 1), minimum: threshold)
        #expect(Set(filled.map(\.item)) == content.union(embedding) && filled.count == content.union(embedding).count)
        #expect(!filled.contains { history.contains($0.item) })
    }

    @Test func kBeyondTheCatalogueReturnsEveryUnseenItem() throws {
        let recommender = Fixture.recommender(Fixture.modelFile())
        let n = recommender.catalogue.count
        let history: [Int32] = [0, 3, 6, 9, 12, 15]
        for k in [n + 1, Int.max - 3, Int.max] {
            for excludeSeen in [true, false] {
                var configuration = RecallConfiguration()
                configuration.excludeSeen = excludeSeen
                let result = try recommender.recommend(
                    [RecallRequest(history: history, exclude: [30], k: k)], configuration: configuration)[0]
                let expected = n - 1 - (excludeSeen ? history.count : 0)
                #expect(result.items.count == expected && Set(result.items.map(\.item)).count == expected, "k \(k)")
                #expect(!result.items.contains { $0.item == 30 })
            }
        }
    }

    @Test func nonPositiveKIsAnError() throws {
        let recommender = Fixture.recommender(Fixture.modelFile())
        var configuration = RecallConfiguration()
        configuration.k = 0
        #expect(throws: RecallError.self) { try recommender.recommend([RecallRequest(history: [1])], configuration: configuration) }
        #expect(throws: RecallError.self) {
            try recommender.recommend([RecallRequest(history: [1], k: -1)], configuration: RecallConfiguration())
        }
    }

    @Test func coldItemIsEmbeddedFromContentAndReachedThroughContent() throws {
        var file = Fixture.modelFile()
        try ColdItems.add(to: &file, id: "new", title: "Brand New Drama (2021)", genres: ["Drama"], tags: ["fresh"])
        #expect(file.addedItems.count == 1)
        #expect(throws: RecallError.self) { try ColdItems.add(to: &file, id: "new", title: "x", genres: []) }
        // Genres match the model's ignoring case; one it has no column for is refused, naming those it has.
        var spelt = Fixture.modelFile()
        try ColdItems.add(to: &spelt, id: "new", title: "Brand New Drama (2021)", genres: ["drama"], tags: ["fresh"])
        #expect(spelt.addedItems == file.addedItems)
        let unknown = try #require(throws: RecallError.self) {
            try ColdItems.add(to: &spelt, id: "other", title: "Other (2021)", genres: ["Dramma"])
        }
        #expect(unknown.message.contains("genre 'Dramma' is not one of the model's genres (it has "), "\(unknown)")
        #expect(unknown.message.contains("Drama"), "\(unknown)")
        #expect(spelt.addedItems.count == 1)
        // A feature row made elsewhere (a data set's, in its own column order) gives the same item.
        var twin = Fixture.modelFile()
        let names = try #require(twin.itemContent?.featureNames)
        let row = try ItemFeaturizer(featureNames: names).features(
            title: "Brand New Drama (2021)", genres: ["Drama"], tags: ["fresh"])
        #expect(row.count >= 2)
        let reversed = Array(names.reversed())
        try ColdItems.add(
            to: &twin, id: "new", title: "Brand New Drama (2021)", genres: ["Drama"],
            features: row.map { (column: Int32(names.count - 1) - $0.column, value: $0.value) }, featureNames: reversed)
        #expect(twin.addedItems == file.addedItems)
        #expect(throws: RecallError.self) {
            try ColdItems.add(
                to: &twin, id: "other", title: "x", genres: [], features: [(column: 0, value: 1)], featureNames: ["nope"])
        }
        let embedding = file.addedItems.embeddings.storage
        #expect(abs(embedding.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4)

        // Survives the model file.
        let path = Fixture.temporaryPath("model.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file.write(to: path)
        let loaded = try ModelFile.read(from: path)
        #expect(loaded.addedItems == file.addedItems)

        let recommender = Fixture.recommender(loaded)
        let newItem = Int32(recommender.catalogue.index(ofID: "new")!)
        #expect(newItem == 60)
        // A user whose history is only the new item: cold state, content channel, similar (Drama) items.
        var configuration = RecallConfiguration()
        configuration.k = 6
        let result = try recommender.recommend([RecallRequest(history: [newItem])], configuration: configuration)[0]
        #expect(result.state == .cold)
        let content = result.items.filter { $0.channel == .content }
        #expect(!content.isEmpty && content.allSatisfy { $0.item % 3 == 2 })
        // A Drama fan reaches the new item through the content channel.
        configuration.warm = ChannelQuotas(content: 1)
        configuration.k = 20
        let fan = try recommender.recommend([RecallRequest(history: [2, 5, 8, 11, 14, 17])], configuration: configuration)[0]
        #expect(fan.items.contains { $0.item == newItem })
    }
}

@Suite struct CatalogueAndFileTests {
    @Test func titlesMatchCaseInsensitivelyAndListCandidates() throws {
        let catalogue = Fixture.recommender(Fixture.modelFile()).catalogue
        #expect(try catalogue.resolve(titles: ["beta (1991)", "  MOVIE 10 (1960)"]) == [1, 10])
        #expect { try catalogue.resolve(titles: ["Alpha (1990)"]) } throws: {
            let error = $0 as? RecallError
            return error?.code == .ambiguousTitle && error?.candidates.count == 2
        }
        #expect { try catalogue.resolve(titles: ["Movie 1O (1960)"]) } throws: {
            let error = $0 as? RecallError
            return error?.code == .unknownItem && error?.candidates.first == "Movie 10 (1960)"
        }
        #expect { try catalogue.resolve(ids: ["i1", "nope"]) } throws: {
            ($0 as? RecallError)?.message.contains("history item 'nope' is not in the model's catalogue") == true
        }
    }

    /// `--history` lists titles with commas; a title may hold commas itself (the longest run that is a title
    /// wins), and an unknown piece is named in the error.
    @Test func titleListsTakeTitlesThatHoldCommas() throws {
        let file = Fixture.modelFile()
        let commas = [
            "Shawshank Redemption, The (1994)", "Shawshank Redemption", "Good, the Bad and the Ugly, The (1966)",
            "Twin, The (2001)", "Twin, The (2001)",
        ]
        let titles = commas + (commas.count..<file.itemIDs.count).map(Fixture.title)
        let catalogue = RecallCatalogue(model: file, titles: titles, genres: titles.map { _ in [] })
        #expect(
            try catalogue.resolve(titleList: "shawshank redemption, the (1994), Movie 10 (1960),,  ") == [0, 10])
        #expect(try catalogue.resolve(titleList: "Good, the Bad and the Ugly, The (1966),Shawshank Redemption") == [2, 1])
        #expect(try catalogue.resolve(titleList: "Shawshank Redemption, Movie 5 (1955)") == [1, 5])
        #expect { try catalogue.resolve(titleList: "Twin, The (2001)") } throws: {
            ($0 as? RecallError)?.code == .ambiguousTitle
        }
        #expect(try catalogue.resolve(titleList: " ") == [])
        #expect { try catalogue.resolve(titleList: "Movie 5 (1955), Nope, Movie 6 (1956)") } throws: {
            ($0 as? RecallError)?.message.hasPrefix("no item has the title 'Nope'") == true
        }
    }

    /// Item embeddings are the item tower's unit (or zero) rows: a file whose rows are not is refused at load,
    /// naming the tensor and row, instead of scoring with them (finite but huge rows gave NaN scores).
    @Test func itemEmbeddingsMustBeUnitRows() throws {
        let path = Fixture.temporaryPath("model.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        var file = Fixture.modelFile()
        let d = file.itemEmbeddings.columns
        for c in 0..<d { file.itemEmbeddings.storage[7 * d + c] = 0 }  // a zero row is allowed
        try file.write(to: path)
        _ = try ModelFile.read(from: path)
        for c in 0..<d { file.itemEmbeddings.storage[5 * d + c] *= 1e30 }
        try file.write(to: path)
        #expect { try ModelFile.read(from: path) } throws: {
            "\($0)".contains("tensor 'item_embeddings' row 5 is not a unit vector")
        }
    }

    @Test func int32TensorsRoundTrip() throws {
        let file = SafeTensors(tensors: [
            SafeTensor(name: "a", shape: [2], values: [1.5, -2]),
            SafeTensor(name: "b", shape: [3], integers: [0, -7, Int32.max]),
        ])
        let decoded = try SafeTensors(bytes: file.encoded(), file: "memory")
        #expect(decoded.tensors == file.tensors)
        #expect(throws: TensorFileError.self) { try decoded.tensor("b", shape: [3], file: "memory") }
        #expect(try decoded.tensor("b", shape: [3], dtype: .i32, file: "memory").integers == [0, -7, Int32.max])
    }

    @Test func optionalPartsRoundTripAndOlderFilesStillLoad() throws {
        let path = Fixture.temporaryPath("model.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = Fixture.modelFile()
        try file.write(to: path)
        let loaded = try ModelFile.read(from: path)
        #expect(loaded.itemPopularity == file.itemPopularity)
        #expect(loaded.itemContent == file.itemContent)

        let old = Fixture.modelFile(withOptionalParts: false)
        try old.write(to: path)
        let loadedOld = try ModelFile.read(from: path)
        #expect(loadedOld.itemPopularity == nil && loadedOld.itemContent == nil && loadedOld.addedItems.count == 0)
        var copy = loadedOld
        #expect(throws: RecallError.self) { try ColdItems.add(to: &copy, id: "x", title: "X", genres: []) }
    }

    @Test func featurizerRejectsForeignLayouts() {
        #expect(throws: DataError.self) { try ItemFeaturizer(featureNames: ["title#0", "genre:Action"]) }
        #expect(throws: Never.self) { try ItemFeaturizer(featureNames: Fixture.featureNames) }
    }
}
