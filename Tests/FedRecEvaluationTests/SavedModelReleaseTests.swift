import FedRecData
import FedRecEvaluation
import FedRecModel
import Foundation
import Testing

/// A model file released under differential privacy must be a function of the noised model and the public
/// catalogue only: two data sets that differ in one user's interactions give the same file for the same weights.
@Suite struct SavedModelReleaseTests {
    /// A generic interactions file: 12 users with 6 distinct items each over items i0...i9, every item rated;
    /// in the `neighbour` file the first user, u0, rated items 9, 8, 7, 6, 5, 4 instead of 0, 3, 6, 9, 2, 5: the
    /// same catalogue, first met in another order (the data set's item index).
    func interactions(neighbour: Bool) -> String {
        var lines = ["user\titem\tvalue\ttimestamp"]
        for user in 0..<12 {
            for step in 0..<6 {
                var item = (user + step * 3) % 10
                if neighbour && user == 0 { item = 9 - step }
                lines.append("u\(user)\ti\(item)\t1\t\(1_000 + step)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Imports `text` as a generic source and returns the data set with its manifest's file digests (as a
    /// data-set folder written and loaded again would have them).
    func dataset(_ text: String) throws -> Dataset {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fedrec-release-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent("interactions.tsv")
        try Data(text.utf8).write(to: source)
        let result = try DatasetImporter.importDataset(format: .generic, source: source.path)
        let (manifest, _) = try result.encode()
        return Dataset(manifest: manifest, content: result.content, split: result.split)
    }

    func bytes(of file: ModelFile) throws -> [UInt8] {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fedrec-release-\(UUID().uuidString).safetensors"
        ).path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file.write(to: path)
        return Array(try #require(FileManager.default.contents(atPath: path)))
    }

    @Test func aPrivateReleaseDependsOnTheCatalogueNotOnTheInteractions() throws {
        let original = try dataset(interactions(neighbour: false))
        let neighbour = try dataset(interactions(neighbour: true))
        #expect(original.userIDs == neighbour.userIDs)
        #expect(Set(original.itemIDs) == Set(neighbour.itemIDs) && original.itemIDs != neighbour.itemIDs)
        #expect(original.checksum != neighbour.checksum)
        #expect(!original.catalogueChecksum.isEmpty)
        #expect(original.catalogueChecksum == neighbour.catalogueChecksum)

        let configuration = CentralTrainingConfiguration().modelConfiguration(for: original)
        // A DP run starts each item from rows chosen by its id, so both data sets start from the same model.
        let model = TwoTowerModel(configuration: configuration, seed: 3, idOrder: original.itemIndicesInIDOrder)
        let neighbourModel = TwoTowerModel(
            configuration: configuration, seed: 3, idOrder: neighbour.itemIndicesInIDOrder)
        #expect(model != neighbourModel)
        let full = SavedModel.file(model: model, dataset: original)
        #expect(SavedModel.aligned(full, to: neighbour)?.model == neighbourModel)
        #expect(TwoTowerModel(configuration: configuration, seed: 3) != model)
        func file(_ data: Dataset, _ release: SavedModel.Release) -> ModelFile {
            SavedModel.file(
                model: data.itemIDs == original.itemIDs ? model : neighbourModel, dataset: data, release: release)
        }
        // A full release tells the two apart (popularity, checksum, item order); a private one cannot.
        #expect(try bytes(of: file(original, .full)) != bytes(of: file(neighbour, .full)))
        #expect(
            try bytes(of: file(original, .differentiallyPrivate)) == bytes(of: file(neighbour, .differentiallyPrivate)))

        let released = file(original, .differentiallyPrivate)
        #expect(released.itemIDs == original.itemIDs.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        #expect(released.itemIDs != original.itemIDs)
        // Paired with its data set it is the same model, in the data set's order, with titles to match.
        let back = try #require(SavedModel.aligned(released, to: original))
        #expect(back.model == model && back.itemEmbeddings == full.itemEmbeddings && back.itemIDs == original.itemIDs)
        #expect(back.itemContent == full.itemContent)
        #expect(SavedModel.titles(of: back) == original.titles && SavedModel.titles(of: full) == original.titles)
        let releasedTitles = try #require(SavedModel.titles(of: released))
        let position = Dictionary(uniqueKeysWithValues: original.itemIDs.enumerated().map { ($1, $0) })
        #expect(releasedTitles == released.itemIDs.map { original.titles[position[$0]!] })
        #expect(released.itemPopularity == nil)
        #expect(released.datasetChecksum == original.catalogueChecksum)
        #expect(
            released.extraMetadata[SavedModel.MetadataKey.datasetChecksumScope] == SavedModel.catalogueChecksumScope)
        #expect(file(original, .full).itemPopularity != nil)

        // Either release is recognised as trained on its data set (recall and evaluate check it).
        #expect(SavedModel.matches(released, dataset: original))
        #expect(SavedModel.matches(released, dataset: neighbour))
        #expect(SavedModel.matches(file(original, .full), dataset: original))
        #expect(!SavedModel.matches(file(original, .full), dataset: neighbour))
        // Another catalogue does not match a private release.
        let otherCatalogue = try dataset(
            interactions(neighbour: false).replacingOccurrences(of: "\ti9\t", with: "\ti10\t"))
        #expect(otherCatalogue.catalogueChecksum != original.catalogueChecksum)
        #expect(!SavedModel.matches(released, dataset: otherCatalogue))
        #expect(SavedModel.aligned(released, to: otherCatalogue) == nil)

        // Only a reordering of the same items is taken.
        let n = full.itemIDs.count
        #expect(full.reorderingItems(order: Array(repeating: 0, count: n)) == nil)
        #expect(full.reorderingItems(order: Array(0..<(n - 1))) == nil)
        #expect(full.reorderingItems(order: [n] + Array(1..<n)) == nil)
        #expect(full.reorderingItems(as: ["i0"] + full.itemIDs.dropFirst().dropLast() + ["nope"]) == nil)
        #expect(full.reorderingItems(order: Array(0..<n))?.model == full.model)
    }
}
